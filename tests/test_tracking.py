"""Experiment tracking (`work --log`, a sweep's `log`): each backend logged for real, offline, and
read back with its own reader (TensorBoard's EventAccumulator, W&B's offline transaction log,
MLflow's file store through `MlflowClient`); a resumed job continues the same run with no step
twice; a backend that fails warns once and the job still finishes.

A backend whose library is not installed is skipped with the reason, except where
LORABENCH_REQUIRE_TRACKING=1 (CI sets it, and installs all three through `.[test]`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import ConfigError, SweepSpec, resolve_job
from lorabench.store import open_engine
from lorabench.store.models import Job
from lorabench.store.queue import sweep_of
from lorabench.tracking import TrackingTarget, flat_params, parse_backends, run_name
from lorabench.tracking.job import STATE_NAME, JobTracker
from lorabench.train import Interrupted, train_job

REQUIRE_ENV = "LORABENCH_REQUIRE_TRACKING"
SWEEP, JOB_ID = "track", 7
STEPS = [1, 2, 3, 4, 5, 6]  # noop: 16 examples, batches of 8 -> 2 steps per epoch, 3 epochs
EPOCH_ENDS = [2, 4, 6]


def require(package: str) -> None:
    """Skip where `package` is missing, or fail with LORABENCH_REQUIRE_TRACKING=1 (CI)."""
    if importlib.util.find_spec(package) is not None:
        return
    reason = f"{package} is not installed (pip install 'lorabench[{package}]')"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path: Path):
    """W&B offline and quiet, in this test's folder; MLflow on no server."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    for name in ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                 "MLFLOW_ALLOW_FILE_STORE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)  # the backend opts in to the file store itself


def noop(**values):
    return resolve_job({"task": "noop", "variant": "lora", "lr": 1e-2, "seed": 1,
                        "train_size": 16, "epochs": 3, **values})  # fmt: skip


def tracker(cfg, out_dir: Path, log_dir: Path, backends: tuple[str, ...], said: list[str]):
    target = TrackingTarget(backends=backends, log_dir=str(log_dir), sweep=SWEEP, job_id=JOB_ID)
    return JobTracker.for_job(target, cfg.model_dump(mode="json"), cfg.config_hash, out_dir,
                              said.append)  # fmt: skip


def trained(cfg, out_dir: Path, log_dir: Path, backends: tuple[str, ...], said: list[str],
            **options):  # fmt: skip
    """One attempt of the job as the worker's child runs it: train, then close the runs."""
    job = tracker(cfg, out_dir, log_dir, backends, said)
    try:
        result = train_job(cfg, out_dir, observer=job, **options)
    except BaseException as error:
        job.close("interrupted" if isinstance(error, Interrupted) else "failed")
        raise
    job.finish(result.summary)
    job.close("finished")
    return result


def by_step(result, split: str, name: str) -> dict[int, float]:
    return {step: value for s, n, step, _, value in result.metrics if (s, n) == (split, name)}


RUN = f"{SWEEP}/lora/lr=0.01/seed=1/job-{JOB_ID}"


def mlflow_runs(logs: Path, experiment: str) -> list:
    """`mlflow.search_runs` on the file store under `logs` (the backend's default)."""
    import mlflow

    mlflow.set_tracking_uri((logs / "mlruns").as_uri())
    with mock.patch.dict(os.environ, {"MLFLOW_ALLOW_FILE_STORE": "true"}):
        return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def metric_steps(logs: Path, run_id: str, key: str) -> dict[int, float]:
    """A metric's history by step (`MlflowClient.get_metric_history`), each step once."""
    from mlflow.tracking import MlflowClient

    with mock.patch.dict(os.environ, {"MLFLOW_ALLOW_FILE_STORE": "true"}):
        points = MlflowClient((logs / "mlruns").as_uri()).get_metric_history(run_id, key)
    steps = [p.step for p in points]
    assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {sorted(steps)}"
    return {p.step: p.value for p in points}


# --- names, parameters, the sweep's field ------------------------------------------------------


def test_backend_names_are_parsed_once_each_and_a_typo_gets_a_suggestion():
    assert parse_backends(["tensorboard,WandB", "mlflow", "tensorboard"]) == (
        "tensorboard", "wandb", "mlflow")  # fmt: skip
    assert parse_backends(["none"]) == ()
    with pytest.raises(ValueError) as error:
        parse_backends(["tensorbord"])
    assert str(error.value) == "unknown tracking backend 'tensorbord'; did you mean 'tensorboard'?"


def test_a_run_is_named_by_sweep_variant_lr_seed_and_job_and_gets_the_flat_config():
    cfg = noop(variant_params={}, task_params={"sleep_s": 0.5})
    config = cfg.model_dump(mode="json")
    assert run_name("lr", config, 12) == "lr/lora/lr=0.01/seed=1/job-12"
    params = flat_params(config)
    assert params["lr"] == 0.01 and params["variant"] == "lora" and params["seed"] == 1
    assert params["targets"] == '["proj"]'
    assert params["task_params.sleep_s"] == 0.5
    assert params["max_steps"] == "null"
    assert set(params) == {k for k in config if not isinstance(config[k], dict)} | {
        "task_params.sleep_s"}  # fmt: skip


def test_a_sweep_names_its_trackers_and_plan_stores_them_for_the_workers(tmp_path: Path):
    spec = SweepSpec.from_mapping({"task": "noop", "log": "tensorboard"})
    assert spec.log == ("tensorboard",)
    assert spec.override({"lr": [0.1]}).log == ("tensorboard",)
    with pytest.raises(ConfigError, match=r"field 'log': unknown tracking backend 'mlfow'; "
                       r"did you mean 'mlflow'\?"):  # fmt: skip
        SweepSpec.from_mapping({"task": "noop", "log": ["mlfow"]}, source="s.toml")
    db = tmp_path / "t.db"
    sweep_file = tmp_path / "logged.toml"
    sweep_file.write_text(
        'task = "noop"\nvariant = "lora"\nlr = [0.1, 0.2]\nlog = ["mlflow", "tensorboard"]\n'
    )
    planned = CliRunner().invoke(app, ["plan", str(sweep_file), "--db", str(db)])
    assert planned.exit_code == 0, planned.output
    flags = CliRunner().invoke(app, ["plan", "--db", str(db), "--name", "flags", "--task", "noop",
                                     "--variant", "lora", "--lr", "0.3", "--log", "wandb",
                                     "--log", "tensorboard"])  # fmt: skip
    assert flags.exit_code == 0, flags.output
    plain = CliRunner().invoke(app, ["plan", "--db", str(db), "--name", "plain", "--task", "noop",
                                     "--variant", "lora", "--lr", "0.4"])  # fmt: skip
    assert plain.exit_code == 0, plain.output
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        jobs = dict(conn.execute(select(Job.id, Job.sweep_id)).all())
    found = {sweep_of(engine, job_id).name: sweep_of(engine, job_id).tracking for job_id in jobs}
    assert found == {"logged": ("mlflow", "tensorboard"), "flags": ("wandb", "tensorboard"),
                     "plain": ()}  # fmt: skip
    engine.dispose()


def test_work_refuses_an_unknown_or_missing_backend_before_claiming(tmp_path: Path, monkeypatch):
    db = str(tmp_path / "t.db")
    typo = CliRunner().invoke(app, ["work", "--db", db, "--log", "wandbb", "--exit-when-empty"])
    assert typo.exit_code == 2
    assert "unknown tracking backend 'wandbb'; did you mean 'wandb'?" in typo.output
    monkeypatch.setattr("lorabench.tracking.missing_backends", lambda names: list(names))
    missing = CliRunner().invoke(app, ["work", "--db", db, "--log", "mlflow", "--exit-when-empty"])
    assert missing.exit_code == 2
    assert "--log mlflow: mlflow is not installed (pip install 'lorabench[mlflow]')" in (
        missing.output)  # fmt: skip


# --- each backend, read back with its own reader --------------------------------------------


def tensorboard_run(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag: str) -> dict[int, float]:
    events = accumulator.Scalars(tag)
    steps = [e.step for e in events]
    assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {steps}"
    return {e.step: e.value for e in events}


def test_tensorboard_holds_the_curves_evaluations_config_and_summary(tmp_path: Path):
    require("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg, said = noop(), []
    result = trained(cfg, tmp_path / "job", tmp_path / "logs", ("tensorboard",), said)
    assert said == []
    run = tensorboard_run(tmp_path / "logs" / "tensorboard" / RUN)
    loss = scalars(run, "train/loss")
    assert list(loss) == STEPS
    for step, value in by_step(result, "train", "loss").items():
        assert loss[step] == pytest.approx(value, rel=1e-6)  # TensorBoard keeps float32
    assert scalars(run, "train/lr") == pytest.approx(by_step(result, "train", "lr"), rel=1e-6)
    assert scalars(run, "train/epoch") == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3}
    assert scalars(run, "test/score") == pytest.approx(by_step(result, "eval", "score"), rel=1e-6)
    assert list(scalars(run, "select/score")) == EPOCH_ENDS
    assert scalars(run, "summary/best_score") == pytest.approx({6: result.summary["best_score"]})
    (text,) = run.Tensors("config/text_summary")
    config = text.tensor_proto.string_val[0].decode()
    assert json.loads(config.removeprefix("```json\n").removesuffix("\n```")) == cfg.model_dump(
        mode="json")  # fmt: skip
    content = run.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(0.01)
    assert hparams["variant"].string_value == "lora"
    assert hparams["targets"].string_value == '["proj"]'


def test_mlflow_holds_one_run_with_the_config_as_params_and_every_metric(tmp_path: Path):
    require("mlflow")
    cfg, said, logs = noop(), [], tmp_path / "logs"
    result = trained(cfg, tmp_path / "job", logs, ("mlflow",), said)
    assert said == []
    (run,) = mlflow_runs(logs, SWEEP)
    assert run.info.run_name == RUN and run.info.status == "FINISHED"
    assert run.data.tags["lorabench.job_id"] == str(JOB_ID)
    assert run.data.tags["lorabench.config_hash"] == cfg.config_hash
    config = cfg.model_dump(mode="json")
    assert run.data.params == {k: str(v) for k, v in flat_params(config).items()}

    def history(key: str) -> dict[int, float]:
        return metric_steps(logs, run.info.run_id, key)

    assert history("train/loss") == by_step(result, "train", "loss")
    assert history("train/lr") == by_step(result, "train", "lr")
    assert history("test/score") == by_step(result, "eval", "score")
    assert history("select/score") == by_step(result, "select", "score")
    assert history("summary/best_score") == {6: result.summary["best_score"]}
    assert history("summary/total_steps") == {6: 6.0}


def test_wandb_offline_holds_the_run_its_config_history_and_summary(tmp_path: Path):
    require("wandb")
    from wandb_offline import offline_runs

    cfg, said = noop(), []
    result = trained(cfg, tmp_path / "job", tmp_path / "logs", ("wandb",), said)
    assert said == []
    (run,) = offline_runs(tmp_path / "logs")
    saved = json.loads((tmp_path / "job" / STATE_NAME).read_text())
    assert run.run_id == saved["backends"]["wandb"]["run_id"]
    assert run.run_id.startswith(cfg.config_hash[:12] + "-")
    assert (run.name, run.group, run.project) == (RUN, SWEEP, "lorabench")
    assert {k: run.config[k] for k in ("lr", "variant", "seed", "targets")} == {
        "lr": 0.01, "variant": "lora", "seed": 1, "targets": ["proj"]}  # fmt: skip
    steps = [row["_step"] for row in run.history]
    assert steps == STEPS
    assert {row["_step"]: row["train/loss"] for row in run.history} == by_step(
        result, "train", "loss")  # fmt: skip
    assert {row["_step"]: row["test/score"] for row in run.history if "test/score" in row} == (
        by_step(result, "eval", "score"))  # fmt: skip
    assert run.summary["summary/best_score"] == result.summary["best_score"]
    assert run.exit_code == 0


# --- resumed jobs continue their run ---------------------------------------------------------


class Crash(RuntimeError):
    pass


def stop_after(step: int, events: list, *, crash: bool):
    """Ask the trainer to stop after `step` (it checkpoints: interrupted), or raise there
    (failed: the job resumes from its last periodic checkpoint)."""

    def stop() -> bool:
        if sum(e["phase"] == "train" for e in events) < step:
            return False
        if crash:
            raise Crash("transient trouble")
        return True

    return stop


@pytest.mark.parametrize(("ended", "resumed_from"), [("interrupted", 3), ("failed", 2)])
def test_a_job_resumed_after_it_stopped_continues_its_runs_with_no_step_twice(
    tmp_path: Path, ended: str, resumed_from: int
):
    """Stopped after step 3: interrupted (checkpoint at 3) or failed (checkpoint at 2, so the
    resumed trainer recomputes step 3, which every backend already has and must not get again)."""
    for package in ("tensorboard", "mlflow", "wandb"):
        require(package)
    from wandb_offline import offline_runs

    backends = ("tensorboard", "mlflow", "wandb")
    cfg, said, events = noop(), [], []
    straight = train_job(cfg, tmp_path / "straight")
    out, logs = tmp_path / "job", tmp_path / "logs"
    with pytest.raises(Interrupted if ended == "interrupted" else Crash):
        trained(cfg, out, logs, backends, said, on_progress=events.append, checkpoint_every=2,
                should_stop=stop_after(3, events, crash=ended == "failed"))  # fmt: skip
    first = json.loads((out / STATE_NAME).read_text())["backends"]
    assert {name: first[name]["last"]["train/loss"] for name in backends} == dict.fromkeys(
        backends, 3)  # fmt: skip
    resumed = trained(cfg, out, logs, backends, said, checkpoint_every=2)
    assert resumed.resumed_from_step == resumed_from and said == []
    expected = by_step(straight, "train", "loss")

    tensorboard = scalars(tensorboard_run(logs / "tensorboard" / RUN), "train/loss")
    assert tensorboard == pytest.approx(expected, rel=1e-5)
    (run,) = mlflow_runs(logs, SWEEP)
    assert run.info.run_id == first["mlflow"]["run_id"] and run.info.status == "FINISHED"
    assert metric_steps(logs, run.info.run_id, "train/loss") == pytest.approx(expected, rel=1e-5)
    attempts = offline_runs(logs)
    assert [a.run_id for a in attempts] == [first["wandb"]["run_id"]] * 2  # one run, reopened
    assert [[row["_step"] for row in a.history] for a in attempts] == [[1, 2, 3], [4, 5, 6]]


def test_after_a_hard_kill_steps_past_the_checkpoint_are_not_logged_twice(tmp_path: Path):
    """The trainer dies after step 3 with its checkpoint at step 2 and its runs never closed:
    step 3 reached the backends but was not recorded as logged. The resumed job recomputes it;
    TensorBoard purges the first copy, MLflow's store says it has it."""
    for package in ("tensorboard", "mlflow"):
        require(package)

    class Killed(Exception):
        pass

    backends = ("tensorboard", "mlflow")
    cfg, said, events = noop(), [], []
    out, logs = tmp_path / "job", tmp_path / "logs"
    killed = tracker(cfg, out, logs, backends, said)

    def die_after_three() -> bool:
        if sum(e["phase"] == "train" for e in events) >= 3:
            killed.live["tensorboard"].flush()  # what a kill leaves on disk, at worst
            raise Killed
        return False

    with pytest.raises(Killed):
        train_job(cfg, out, observer=killed, on_progress=events.append,
                  should_stop=die_after_three, checkpoint_every=2)  # fmt: skip
    recorded = json.loads((out / STATE_NAME).read_text())["backends"]["mlflow"]["last"]
    assert recorded == dict.fromkeys(["train/loss", "train/lr", "train/epoch", "select/score",
                                      "test/score"], 2)  # fmt: skip
    resumed = trained(cfg, out, logs, backends, said, checkpoint_every=2)
    assert resumed.resumed_from_step == 2 and said == []
    expected = by_step(resumed, "train", "loss")
    assert list(expected) == STEPS
    tensorboard = scalars(tensorboard_run(logs / "tensorboard" / RUN), "train/loss")
    assert tensorboard == pytest.approx(expected, rel=1e-5)
    (run,) = mlflow_runs(logs, SWEEP)
    assert metric_steps(logs, run.info.run_id, "train/loss") == pytest.approx(expected, rel=1e-5)
    killed.live["tensorboard"].close("failed")


def test_a_pack_logs_each_job_to_its_own_runs(tmp_path: Path):
    """Two jobs trained together (`work --pack`): two runs on every backend, open at once in
    one process, each with its own job's curve."""
    for package in ("tensorboard", "mlflow", "wandb"):
        require(package)
    from wandb_offline import offline_runs

    from lorabench.train.packed import train_packed

    backends = ("tensorboard", "mlflow", "wandb")
    cfgs, said, logs = [noop(lr=1e-2), noop(lr=3e-2)], [], tmp_path / "logs"
    outs = [tmp_path / "a", tmp_path / "b"]
    trackers = []
    for job_id, (cfg, out) in enumerate(zip(cfgs, outs, strict=True), 1):
        target = TrackingTarget(backends=backends, log_dir=str(logs), sweep=SWEEP, job_id=job_id)
        trackers.append(JobTracker.for_job(target, cfg.model_dump(mode="json"), cfg.config_hash,
                                           out, said.append))  # fmt: skip
    results = train_packed(cfgs, outs, observers=trackers)
    for job, result in zip(trackers, results, strict=True):
        job.finish(result.summary)
        job.close("finished")
    assert said == []
    names = [f"{SWEEP}/lora/lr=0.01/seed=1/job-1", f"{SWEEP}/lora/lr=0.03/seed=1/job-2"]
    mlflow_by_name = {run.info.run_name: run for run in mlflow_runs(logs, SWEEP)}
    wandb_by_name = {run.name: run for run in offline_runs(logs)}
    assert sorted(mlflow_by_name) == sorted(wandb_by_name) == names
    for name, result in zip(names, results, strict=True):
        expected = by_step(result, "train", "loss")
        assert scalars(tensorboard_run(logs / "tensorboard" / name), "train/loss") == (
            pytest.approx(expected, rel=1e-6))  # fmt: skip
        run_id = mlflow_by_name[name].info.run_id
        assert metric_steps(logs, run_id, "train/loss") == expected
        history = wandb_by_name[name].history
        assert {row["_step"]: row["train/loss"] for row in history} == expected
    assert by_step(results[0], "train", "loss") != by_step(results[1], "train", "loss")


# --- a backend that fails never fails the job -------------------------------------------------


def test_a_backend_that_raises_is_dropped_with_one_warning_and_the_others_go_on(
    tmp_path: Path, monkeypatch
):
    for package in ("tensorboard", "mlflow"):
        require(package)
    from lorabench.tracking.tensorboard import TensorBoardRun

    calls, log = [], TensorBoardRun.log

    def broken(self, step, values):  # noqa: ANN001
        calls.append(step)
        if step == 3:
            raise OSError(28, "No space left on device")
        log(self, step, values)

    monkeypatch.setattr(TensorBoardRun, "log", broken)
    cfg, said = noop(), []
    result = trained(cfg, tmp_path / "job", tmp_path / "logs", ("tensorboard", "mlflow"), said)
    assert said == [f"job {JOB_ID}: tensorboard logging failed (OSError: [Errno 28] No space "
                    "left on device); the job goes on without it"]  # fmt: skip
    assert calls == [1, 2, 2, 2, 3]  # steps 1, 2, the epoch's two evaluations, then dropped
    assert list(scalars(tensorboard_run(tmp_path / "logs" / "tensorboard" / RUN),
                        "train/loss")) == [1, 2]  # fmt: skip
    (run,) = mlflow_runs(tmp_path / "logs", SWEEP)
    assert list(metric_steps(tmp_path / "logs", run.info.run_id, "train/loss")) == STEPS
    assert result.summary["total_steps"] == 6


# --- through the worker --------------------------------------------------------------------


def work(db: Path, tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["work", "--db", str(db), "--gpu", "cpu", "--exit-when-empty",
                                    "--runs-dir", str(tmp_path / "runs"), *args])  # fmt: skip


def job_states(db: Path) -> list[tuple[int, str, int]]:
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.state, Job.attempts).order_by(Job.id)).all()
    engine.dispose()
    return [tuple(row) for row in rows]


@pytest.mark.slow
def test_a_worker_logs_a_sweep_that_asks_and_its_killed_job_resumes_the_same_runs(tmp_path: Path):
    """A sweep planned with `--log`: the worker logs its jobs without being told; a trainer
    killed by SIGKILL at step 5 (checkpoint at 3) is requeued and its next attempt continues
    both runs, every step once."""
    for package in ("tensorboard", "mlflow"):
        require(package)
    db = tmp_path / "t.db"
    planned = CliRunner().invoke(app, [
        "plan", "--db", str(db), "--name", "crashy", "--task", "noop", "--variant", "lora",
        "--lr", "0.01",
        "--train-size", "12", "--batch-size", "2", "--max-attempts", "3",
        "--set", 'task_params={fault="crash", fault_step=5}',
        "--log", "tensorboard", "--log", "mlflow"])  # fmt: skip
    assert planned.exit_code == 0, planned.output
    worked = work(db, tmp_path, "--checkpoint-every", "3")
    assert worked.exit_code == 0, worked.output
    assert job_states(db) == [(1, "done", 2)]
    logs = tmp_path / "runs"
    name = "crashy/lora/lr=0.01/seed=0/job-1"
    loss = scalars(tensorboard_run(logs / "tensorboard" / name), "train/loss")
    assert list(loss) == [1, 2, 3, 4, 5, 6]
    (run,) = mlflow_runs(logs, "crashy")
    assert run.info.run_name == name and run.info.status == "FINISHED"
    assert metric_steps(logs, run.info.run_id, "train/loss") == pytest.approx(loss, rel=1e-6)


@pytest.mark.slow
def test_a_worker_whose_tracker_fails_warns_once_and_finishes_every_job(tmp_path: Path):
    require("tensorboard")
    db, logs = tmp_path / "t.db", tmp_path / "logs"
    logs.mkdir()
    (logs / "tensorboard").write_text("a file where TensorBoard's folder should be")
    planned = CliRunner().invoke(app, ["plan", "--db", str(db), "--name", "s", "--task", "noop",
                                       "--variant", "lora", "--lr", "0.01,0.02"])  # fmt: skip
    assert planned.exit_code == 0, planned.output
    worked = work(db, tmp_path, "--log", "tensorboard", "--log-dir", str(logs))
    assert worked.exit_code == 0, worked.output
    assert job_states(db) == [(1, "done", 1), (2, "done", 1)]
    output = " ".join(worked.output.split())
    for job_id in (1, 2):
        assert output.count(f"warning: job {job_id}: tensorboard logging failed (") == 1
    assert "the job goes on without it" in output


@pytest.mark.slow
def test_work_log_none_overrides_the_sweep_and_a_missing_library_is_said_once(
    tmp_path: Path, monkeypatch
):
    db = tmp_path / "t.db"
    planned = CliRunner().invoke(app, ["plan", "--db", str(db), "--name", "s", "--task", "noop",
                                       "--variant", "lora", "--lr", "0.01,0.02,0.03",
                                       "--log", "wandb"])  # fmt: skip
    assert planned.exit_code == 0, planned.output
    off = work(db, tmp_path, "--log", "none", "--max-jobs", "1")
    assert off.exit_code == 0, off.output
    assert not (tmp_path / "runs" / "wandb").exists()
    assert not (tmp_path / "runs" / "job-000001" / STATE_NAME).exists()
    monkeypatch.setattr("lorabench.worker.supervisor.missing_backends", lambda names: list(names))
    said = work(db, tmp_path)
    assert said.exit_code == 0, said.output
    assert [state for _, state, _ in job_states(db)] == ["done"] * 3
    output = " ".join(said.output.split())
    assert output.count("warning: wandb logging is off: wandb is not installed (pip install "
                        "'lorabench[wandb]')") == 1  # fmt: skip
