"""The select split and per-example outcomes end to end: a real worker records `select` and
`eval` metrics per epoch and each epoch's test outcomes, which the report reads after the worker
has exited; a resumed job keeps the outcomes of epochs finished before it stopped; a packed job
reports its solo run's outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import resolve_job
from lorabench.outcomes import decode_outcomes
from lorabench.store import open_engine
from lorabench.store.models import Job, Metric, Outcome
from lorabench.train import Interrupted, train_job
from lorabench.train.checkpoint import load_checkpoint
from lorabench.train.packed import train_packed

TINY_BBC = ["--task", "bbc-news", "--variant", "lora", "--batch-size", "8", "--max-length", "32",
            "--train-size", "16", "--eval-size", "16", "--rank", "4", "--epochs", "2"]  # fmt: skip


@pytest.mark.slow
def test_a_worker_stores_select_and_eval_metrics_and_outcomes_the_report_reads(tmp_path: Path):
    from lorabench.report.load import OutcomeReader

    db = tmp_path / "select.db"
    planned = CliRunner().invoke(app, ["plan", "--db", str(db), *TINY_BBC, "--lr", "1e-3,2e-3"])
    assert planned.exit_code == 0, planned.output
    worker = subprocess.run(
        [sys.executable, "-m", "lorabench", "work", "--db", str(db), "--gpu", "cpu",
         "--exit-when-empty", "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stdout + worker.stderr
    engine = open_engine(str(db), read_only=True)  # a fresh engine: the worker is gone
    with engine.connect() as conn:
        jobs = conn.execute(select(Job.id, Job.state, Job.error)).all()
        metrics = conn.execute(select(Metric.job_id, Metric.split, Metric.name, Metric.epoch,
                                      Metric.value)).all()  # fmt: skip
        stored = conn.execute(select(Outcome.job_id, Outcome.split, Outcome.epoch,
                                     Outcome.data)).all()  # fmt: skip
    assert [(state, error) for _, state, error in jobs] == [("done", None)] * 2
    read = OutcomeReader(engine).read([(job_id, epoch) for job_id, *_ in jobs for epoch in (1, 2)])
    engine.dispose()
    for job_id, *_ in jobs:
        rows = {(m.split, m.name, m.epoch): m.value for m in metrics if m.job_id == job_id}
        for split in ("select", "eval"):
            assert {(n, e) for s, n, e in rows if s == split} == {
                (name, epoch) for name in ("accuracy", "macro_f1") for epoch in (1, 2)
            }
        outcomes = {(o.split, o.epoch): decode_outcomes(o.data) for o in stored
                    if o.job_id == job_id}  # fmt: skip
        assert set(outcomes) == {("eval", 1), ("eval", 2)}
        for (_, epoch), arrays in outcomes.items():
            assert sorted(arrays) == ["prediction", "target"]
            assert len(arrays["prediction"]) == 16  # the test set, eval_size examples
            accuracy = float(np.mean(arrays["prediction"] == arrays["target"]))
            assert accuracy == rows["eval", "accuracy", epoch]  # exactly the stored score
            assert all(np.array_equal(read[job_id, epoch][k], v) for k, v in arrays.items())


def noop(**values):
    return resolve_job({"task": "noop", "variant": "lora", "lr": 1e-2, "seed": 1,
                        "train_size": 16, "epochs": 3, **values})  # fmt: skip


def outcome_arrays(result) -> dict[int, dict[str, np.ndarray]]:  # noqa: ANN001
    assert {split for split, _, _ in result.outcomes} == {"eval"}
    return {epoch: arrays for _, epoch, arrays in result.outcomes}


def test_a_resumed_job_reports_the_outcomes_of_epochs_before_the_interrupt(tmp_path: Path):
    cfg = noop()  # 2 steps per epoch
    straight = train_job(cfg, tmp_path / "straight")
    events: list[dict] = []

    def third_step() -> bool:
        return sum(e["phase"] == "train" for e in events) >= 3

    with pytest.raises(Interrupted):
        train_job(cfg, tmp_path / "resumed", on_progress=events.append, should_stop=third_step)
    kept = load_checkpoint(tmp_path / "resumed")["history"]
    assert [epoch for epoch, _ in kept["outcomes"]] == [1]  # epoch 1 was scored before the stop
    assert [epoch for epoch, _, _ in kept["selects"]] == [1]
    resumed = train_job(cfg, tmp_path / "resumed")
    assert resumed.resumed_from_step == 3
    before, after = outcome_arrays(straight), outcome_arrays(resumed)
    assert sorted(after) == [1, 2, 3]
    for epoch, arrays in before.items():
        for name, values in arrays.items():
            np.testing.assert_allclose(after[epoch][name], values, rtol=1e-6, atol=1e-6)
    selects = [r for r in resumed.metrics if r[0] == "select"]
    assert [(r[1], r[3]) for r in selects] == [("score", e) for e in (1, 2, 3)]


def test_packed_jobs_report_their_solo_outcomes_and_select_scores(tmp_path: Path):
    configs = [noop(lr=lr, epochs=2) for lr in (1e-3, 3e-2)]
    packed = train_packed(configs, [tmp_path / f"packed-{i}" for i in range(2)])
    for i, (config, together) in enumerate(zip(configs, packed, strict=True)):
        alone = train_job(config, tmp_path / f"solo-{i}")
        assert together.summary["packed_evals"] == 2  # the test split, fanned, both epochs
        mine, theirs = outcome_arrays(together), outcome_arrays(alone)
        assert sorted(mine) == sorted(theirs) == [1, 2]
        for epoch, arrays in theirs.items():
            for name, values in arrays.items():
                np.testing.assert_allclose(mine[epoch][name], values, rtol=5e-5, atol=5e-5)
        scores = [[v for s, _, _, _, v in r.metrics if s == "select"] for r in (together, alone)]
        assert len(scores[1]) == 2 and scores[0] == pytest.approx(scores[1], rel=5e-5)
    # The learning rates differ, so do the outcomes: each job got its own.
    first, second = (outcome_arrays(r)[2]["prediction"] for r in packed)
    assert not np.allclose(first, second)


def test_with_select_split_off_no_select_is_held_out_or_scored(tmp_path: Path):
    on, off = (
        train_job(noop(), tmp_path / "on"),
        train_job(noop(select_split=False), tmp_path / "off"),
    )
    assert not [r for r in off.metrics if r[0] == "select"]
    assert [r for r in on.metrics if r[0] == "select"]
    # noop's select points are extra data: the training curve is the same either way.
    assert [r for r in on.metrics if r[0] == "train"] == [r for r in off.metrics if r[0] == "train"]
    assert sorted(outcome_arrays(off)) == [1, 2, 3]
