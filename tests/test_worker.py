"""Real worker processes: kill -9 and resume from checkpoint, graceful SIGTERM, CPU fallback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.store import open_engine
from lorabench.store.models import Attempt, Job, Metric

TINY = ["--task", "bbc-news", "--variant", "lora", "--batch-size", "8", "--max-length", "32",
        "--eval-size", "16", "--rank", "4"]  # fmt: skip


def plan(db: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["plan", "--db", str(db), *TINY, *extra])
    assert result.exit_code == 0, result.output


def start_worker(db: Path, tmp_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "lorabench", "work", "--db", str(db), "--gpu", "cpu",
        "--exit-when-empty", "--lease-seconds", "4", "--heartbeat-seconds", "0.5",
        "--checkpoint-every", "2", "--poll-seconds", "0.5", "--runs-dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def job_rows(db: Path) -> dict[int, tuple]:
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.state, Job.attempts, Job.progress)).all()
    engine.dispose()
    return {r.id: (r.state, r.attempts, json.loads(r.progress or "{}")) for r in rows}


def wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{process.stdout.read()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"timed out:\n{process.stdout.read()}")


def metrics_of(db: Path, job_id: int) -> list[tuple]:
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Metric.split, Metric.name, Metric.step, Metric.value)
            .where(Metric.job_id == job_id, Metric.split != "summary")
            .order_by(Metric.id)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.mark.slow
def test_kill_9_mid_job_then_a_new_worker_resumes_from_the_checkpoint(tmp_path: Path):
    db = tmp_path / "sweep.db"
    plan(db, "--lr", "1e-3", "--train-size", "16", "--epochs", "1", "--priority", "0")
    plan(db, "--lr", "2e-3", "--train-size", "160", "--epochs", "3", "--priority", "1")
    worker = start_worker(db, tmp_path)
    wait_for(lambda: job_rows(db)[2][2].get("step", 0) >= 8, 240, worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    first_done = metrics_of(db, 1)
    assert job_rows(db)[1][0] == "done" and first_done
    assert job_rows(db)[2][0] == "running"  # until a worker sees its holder is dead

    successor = start_worker(db, tmp_path)
    out, _ = successor.communicate(timeout=300)
    assert successor.returncode == 0, out
    assert {job: row[0] for job, row in job_rows(db).items()} == {1: "done", 2: "done"}
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        attempts = conn.execute(
            select(Attempt.outcome, Attempt.resumed_from_step)
            .where(Attempt.job_id == 2)
            .order_by(Attempt.number)
        ).all()
    assert attempts[0] == ("lost", None)
    assert attempts[1][0] == "done" and attempts[1][1] >= 8
    assert metrics_of(db, 1) == first_done
    losses = [m for m in metrics_of(db, 2) if m[:2] == ("train", "loss")]
    assert [m[2] for m in losses] == list(range(1, 61))  # the whole curve, once


@pytest.mark.slow
def test_sigterm_requeues_the_job_with_its_checkpoint_and_no_attempt_spent(tmp_path: Path):
    db = tmp_path / "sweep.db"
    plan(db, "--lr", "1e-3", "--train-size", "160", "--epochs", "3")
    worker = start_worker(db, tmp_path)
    wait_for(lambda: job_rows(db)[1][2].get("step", 0) >= 3, 240, worker)
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 130, out
    state, attempts, _ = job_rows(db)[1]
    assert (state, attempts) == ("queued", 0)
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        outcome = conn.execute(select(Attempt.outcome)).scalar_one()
        out_dir = conn.execute(select(Job.out_dir)).scalar_one()
    assert outcome == "interrupted"
    assert (Path(out_dir) / "checkpoint.pt").exists()


@pytest.mark.slow
def test_cancelling_a_running_job_stops_it_and_the_worker_moves_on(tmp_path: Path):
    db = tmp_path / "sweep.db"
    plan(db, "--lr", "1e-3", "--train-size", "160", "--epochs", "3")
    plan(db, "--lr", "2e-3", "--train-size", "16", "--epochs", "1")
    worker = start_worker(db, tmp_path)
    wait_for(lambda: job_rows(db)[1][2].get("step", 0) >= 2, 240, worker)
    assert CliRunner().invoke(app, ["cancel", "--db", str(db), "--jobs", "1"]).exit_code == 0
    out, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, out
    assert {job: row[0] for job, row in job_rows(db).items()} == {1: "cancelled", 2: "done"}


def test_gpu_0_without_cuda_warns_and_uses_the_cpu(tmp_path: Path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    db = tmp_path / "empty.db"
    plan(db, "--lr", "1e-3", "--train-size", "16", "--epochs", "1")
    CliRunner().invoke(app, ["cancel", "--db", str(db), "--sweep", "default"])
    result = CliRunner().invoke(app, ["work", "--gpu", "0", "--db", str(db), "--exit-when-empty"])
    assert result.exit_code == 0, result.output
    assert "CUDA is not available here, training on the CPU instead" in result.output
    assert "worker on cpu" in result.output


def test_a_job_whose_lease_was_lost_before_it_started_is_reported_not_run(tmp_path: Path):
    # The worker was paused between claim and start (SIGSTOP, a frozen VM) and another worker
    # took the job over: it must say so, and neither start a child nor write anything.
    import io

    from rich.console import Console

    from lorabench.store import claim, register_worker
    from lorabench.worker import Worker, WorkerSettings, WorkerView

    db = tmp_path / "lorabench.db"
    plan(db, "--lr", "1e-3")
    engine = open_engine(str(db))
    paused_id, taker_id = register_worker(engine, "cpu"), register_worker(engine, "cpu")
    stale = claim(engine, paused_id, lease_seconds=1.0, now=time.time() - 10)
    assert claim(engine, taker_id, lease_seconds=600) is not None  # the lease had expired
    output = io.StringIO()
    worker = Worker(engine, WorkerSettings(runs_dir=tmp_path / "runs"),
                    WorkerView(Console(file=output, width=200)))  # fmt: skip
    worker.worker_id = paused_id
    worker.run_one([stale])
    assert "lease lost" in output.getvalue() and "not started" in output.getvalue()
    assert not (tmp_path / "runs").exists()
    assert job_rows(db)[stale.job_id][:2] == ("running", 2)  # the taker's attempt


def test_a_workers_messages_stay_one_line_each_in_a_pipe():
    """Wrapped at the console's width, one message would read as two lines in a log (and as two
    prefixed lines under `work --gpu 0,1`)."""
    import io

    from rich.console import Console

    from lorabench.worker import WorkerView

    output = io.StringIO()
    view = WorkerView(Console(file=output, width=40))  # a StringIO is no terminal
    message = "done job 7 rslora lr=0.001 seed=0 bbc-news: accuracy 0.9500 (select 0.9433)"
    view.say(message)
    view.job_ended(message)
    assert output.getvalue() == f"{message}\n{message}\n"
