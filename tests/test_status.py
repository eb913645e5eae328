"""`lorabench status`: exact snapshot numbers on a database with known rows, and the views."""

import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.monitor import render_snapshot, take_snapshot
from lorabench.monitor.view import format_duration
from lorabench.store import (
    cancel,
    claim,
    enqueue,
    fail,
    finish,
    open_engine,
    register_worker,
    stop_worker,
)
from lorabench.store.models import Job, Worker

T = 1_000_000.0  # the test's epoch; the snapshot is taken at T + 1000
NOW = T + 1000


def configs(seeds):
    return job_rows(
        resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4, "seed": s}) for s in seeds
    )


def set_job(engine, job_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def set_heartbeat(engine, worker_id: int, at: float) -> None:
    with engine.begin() as conn:
        conn.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=at))


@pytest.fixture
def db(tmp_path: Path) -> str:
    """Sweep a (jobs 1-10): 4 done, 1 failed, 1 cancelled while queued, 2 running, 2 queued.
    Sweep b (11-12): 1 done long ago, 1 queued. Workers: 1 alive with a job, 2 dead (lease
    expired), 3 stopped, 4 idle and silent for 300 s (dead), 5 idle, beat 100 s ago (alive)."""
    path = str(tmp_path / "status.db")
    engine = open_engine(path, create=True)
    enqueue(engine, "a", configs(range(10)))
    enqueue(engine, "b", configs(range(10, 12)))
    w1, w2, w3, w4, w5 = (register_worker(engine, f"cuda:{i}") for i in range(5))
    finished_at = {1: T + 100, 2: T + 500, 3: T + 700, 4: T + 900}
    for job_id, at in finished_at.items():
        claimed = claim(engine, w5, lease_seconds=60, sweep="a", now=T)
        assert claimed.job_id == job_id
        finish(engine, claimed, [])
        set_job(engine, job_id, finished_at=at)
    claimed = claim(engine, w5, lease_seconds=60, sweep="a", now=T)
    fail(engine, claimed, "Traceback ...\nValueError: boom", transient=False)
    set_job(engine, 5, finished_at=T + 950)
    cancel(engine, job_ids=[6])
    assert claim(engine, w1, lease_seconds=1100, sweep="a", now=T).job_id == 7
    assert claim(engine, w2, lease_seconds=990, sweep="a", now=T).job_id == 8
    set_job(engine, 7, progress=json.dumps({"step": 5, "total_steps": 10, "loss": 0.5}))
    claimed = claim(engine, w5, lease_seconds=60, sweep="b", now=T)
    finish(engine, claimed, [])
    set_job(engine, 11, finished_at=T + 200)
    stop_worker(engine, w3)
    for worker, at in ((w1, T + 990), (w2, T + 400), (w3, T + 500), (w4, T + 700), (w5, T + 900)):
        set_heartbeat(engine, worker, at)
    engine.dispose()
    return path


def snapshot(db: str, **kwargs):
    engine = open_engine(db, read_only=True)
    try:
        return take_snapshot(engine, now=NOW, **kwargs)
    finally:
        engine.dispose()


def test_counts_throughput_and_eta_per_sweep(db):
    a, b = snapshot(db).sweeps
    assert a.name == "a"
    assert a.counts == {"queued": 2, "running": 2, "done": 4, "failed": 1, "cancelled": 1}
    assert (a.total, a.finished, a.remaining) == (10, 6, 4)
    # Jobs 2-5 finished in the last 10 minutes (job 1 before; job 6 never ran): 4 per 600 s.
    assert a.throughput_per_hour == pytest.approx(24.0)
    assert a.throughput_basis == "last 10 min"
    assert a.eta_seconds == pytest.approx(600.0)  # 4 remaining at 24/hour
    # Nothing finished in b lately: its whole history, 1 job in 200 s.
    assert b.counts["done"] == 1 and b.remaining == 1
    assert b.throughput_basis == "whole sweep"
    assert b.throughput_per_hour == pytest.approx(18.0)
    assert b.eta_seconds == pytest.approx(200.0)


def test_workers_are_alive_stopped_or_dead(db):
    workers = snapshot(db).workers
    assert [w.state for w in workers] == ["alive", "dead", "stopped", "dead", "alive"]
    assert [w.job_id for w in workers] == [7, 8, None, None, None]
    assert [w.heartbeat_age for w in workers] == [10.0, 600.0, 500.0, 300.0, 100.0]
    assert [w.device for w in workers] == [f"cuda:{i}" for i in range(5)]


def test_running_and_failed_jobs(db):
    snap = snapshot(db)
    assert [(j.id, j.sweep, j.lease_left) for j in snap.running] == [
        (7, "a", 100.0),
        (8, "a", -10.0),
    ]
    assert snap.running[0].progress == {"step": 5, "total_steps": 10, "loss": 0.5}
    assert [(j.id, j.attempts, j.error) for j in snap.failed] == [(5, 1, "ValueError: boom")]


def test_sweep_filter_keeps_every_worker(db):
    snap = snapshot(db, sweep="b")
    assert [s.name for s in snap.sweeps] == ["b"]
    assert snap.running == [] and snap.failed == []
    assert len(snap.workers) == 5


def test_render(db):
    console = Console(record=True, width=200)
    console.print(render_snapshot(snapshot(db)))
    text = console.export_text()
    for expected in ("jobs by state", "6/10", "24.0 (last 10 min)", "18.0 (whole sweep)",
                     "workers", "stopped", "dead", "10s ago", "5/10", "0.5000", "100s left",
                     "expired (worker dead?)", "ValueError: boom"):  # fmt: skip
        assert expected in text, expected
    a_row = next(line for line in text.splitlines() if "6/10" in line)
    assert a_row.rstrip(" │").endswith("10m")  # the ETA


def test_empty_database_says_so(tmp_path: Path):
    engine = open_engine(str(tmp_path / "empty.db"), create=True)
    console = Console(record=True, width=100)
    console.print(render_snapshot(take_snapshot(engine, sweep="x")))
    assert "no jobs planned in sweep 'x'" in console.export_text()


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (600, "10m"), (3900, "1h 05m"), (3 * 86400 + 7200, "3d 02h")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_status_once_and_watch_until_told_to_stop(db, monkeypatch):
    once = CliRunner().invoke(app, ["status", "--db", db])
    assert once.exit_code == 0 and "jobs by state" in once.output and "workers" in once.output
    watched = CliRunner().invoke(
        app, ["status", "--watch", "--interval", "0.01", "--iterations", "3", "--db", db]
    )
    assert watched.exit_code == 0, watched.output
    assert "jobs by state" in watched.output and "Ctrl-C to quit" in watched.output

    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", ctrl_c)
    interrupted = CliRunner().invoke(app, ["status", "--watch", "--db", db])
    assert interrupted.exit_code == 0 and interrupted.exception is None
    assert "Traceback" not in interrupted.output


def test_old_stopped_workers_are_counted_not_listed(db):
    engine = open_engine(db)
    for _ in range(7):
        stop_worker(engine, register_worker(engine, "cpu"))
    engine.dispose()
    console = Console(record=True, width=200)
    console.print(render_snapshot(snapshot(db)))
    text = console.export_text()
    assert "+3 older stopped" in text  # 8 stopped in all, the 5 newest listed
    assert text.count("stopped") == 5 + 1
