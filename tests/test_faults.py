"""Fault-injection suite: real `lorabench work` processes on SQLite and on PostgreSQL, running
`noop` jobs (the whole worker path in milliseconds) while the tests kill, pause and break them."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.store import database_time, enqueue, open_engine
from lorabench.store.models import Attempt, Job, Metric, Outcome, Worker

# A noop job reports loss and lr for its one step, one select and one eval score and 9 summary
# values (the 9th: cpu_threads, which the worker's trainer adds).
METRIC_ROWS_PER_NOOP_JOB = 13
LOCK_ERRORS = re.compile(r"database is locked|could not serialize|deadlock detected", re.I)


def plan_noop(db: str, jobs: int, *, sweep: str = "noop", max_attempts: int = 3, **params):
    configs = [
        resolve_job(
            {"task": "noop", "variant": "lora", "lr": 1e-3, "seed": seed, "task_params": params}
        )  # fmt: skip
        for seed in range(jobs)
    ]
    engine = open_engine(db, create=True)
    enqueue(engine, sweep, job_rows(configs), max_attempts=max_attempts)
    engine.dispose()


def start_worker(db: str, runs: Path, *, lease: float = 120.0, new_session: bool = False):
    command = [
        sys.executable, "-m", "lorabench", "work", "--db", db, "--gpu", "cpu",
        "--exit-when-empty", "--poll-seconds", "0.2", "--runs-dir", str(runs),
        "--lease-seconds", str(lease), "--heartbeat-seconds", str(lease / 4),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=new_session)  # fmt: skip


def finish_all(workers, timeout: float, *, code: int = 0) -> list[str]:
    """Each worker's output once it exited with `code` (1: a job it ran ended failed)."""
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=timeout)
        assert worker.returncode == code, out
        outputs.append(out)
    return outputs


class Queue:
    """Read-only questions about the queue's final state."""

    def __init__(self, db: str) -> None:
        self.engine = open_engine(db, read_only=True)

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()

    def rows(self, query):
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def job_states(self) -> Counter:
        return Counter(dict(self.rows(select(Job.state, func.count()).group_by(Job.state))))

    def attempts(self, job_id: int) -> list[tuple[str, str | None]]:
        query = select(Attempt.outcome, Attempt.error).where(Attempt.job_id == job_id)
        return [tuple(r) for r in self.rows(query.order_by(Attempt.number))]

    def assert_each_job_has_one_final_result(self, jobs: int) -> None:
        """Every job's metric rows come from exactly one attempt: the one that ended `done`."""
        per_job = self.rows(
            select(Metric.job_id, func.count(), func.count(func.distinct(Metric.attempt_id)))
            .group_by(Metric.job_id)
        )  # fmt: skip
        assert len(per_job) == jobs
        assert {(rows, attempts) for _, rows, attempts in per_job} == {
            (METRIC_ROWS_PER_NOOP_JOB, 1)
        }
        done = self.rows(
            select(Attempt.job_id, Attempt.id).where(Attempt.outcome == "done")
        )  # fmt: skip
        assert len(done) == jobs and len({job for job, _ in done}) == jobs
        writers = set(self.rows(select(Metric.job_id, Metric.attempt_id).distinct()))
        assert writers == {tuple(row) for row in done}
        # One epoch: one row of per-example outcomes per job, written by the same attempt.
        outcomes = self.rows(select(Outcome.job_id, Outcome.attempt_id))
        assert sorted(map(tuple, outcomes)) == sorted(map(tuple, done))


@pytest.mark.slow
def test_eight_workers_run_two_thousand_jobs_each_exactly_once(db_url: str, tmp_path: Path):
    plan_noop(db_url, 2000)
    workers = [start_worker(db_url, tmp_path / "runs") for _ in range(8)]
    outputs = finish_all(workers, timeout=900)
    handled = [int(re.search(r"worker finished: (\d+) job", out)[1]) for out in outputs]
    assert sum(handled) == 2000
    assert not any(LOCK_ERRORS.search(out) for out in outputs)
    with Queue(db_url) as queue:
        assert queue.job_states() == Counter(done=2000)
        assert queue.rows(select(func.count()).select_from(Attempt))[0][0] == 2000
        queue.assert_each_job_has_one_final_result(2000)


def _pids_running(queue: Queue) -> dict[int, list[int]]:
    rows = queue.rows(
        select(Worker.pid, Job.id).join(Job, Job.worker_id == Worker.id)
        .where(Job.state == "running")
    )  # fmt: skip
    running: dict[int, list[int]] = {}
    for pid, job_id in rows:
        running.setdefault(pid, []).append(job_id)
    return running


def _pids_done(queue: Queue) -> set[int]:
    """Workers that have finished a job."""
    query = select(Worker.pid).join(Attempt, Attempt.worker_id == Worker.id)
    return {pid for (pid,) in queue.rows(query.where(Attempt.outcome == "done").distinct())}


@pytest.mark.slow
def test_random_kill_9_of_workers_loses_nothing_and_reclaims_within_two_leases(
    db_url: str, tmp_path: Path
):
    lease = 3.0
    plan_noop(db_url, 200, max_attempts=20, sleep_s=0.1)
    runs, rng = tmp_path / "runs", random.Random(0)
    workers = [start_worker(db_url, runs, lease=lease) for _ in range(4)]
    kills: list[tuple[float, list[int]]] = []  # (database time of the kill, jobs it held)
    with Queue(db_url) as queue:
        # Up to 8 kills, each of a worker holding a job, while another worker that has finished
        # a job (past its imports and fork server's preload, which take a while on a loaded
        # machine) is there to take the victim's job over.
        deadline = time.time() + 300
        while len(kills) < 8 and time.time() < deadline:
            time.sleep(rng.uniform(0.5, 1.5))
            alive = {w.pid for w in workers}
            held = {pid: jobs for pid, jobs in _pids_running(queue).items() if pid in alive}
            ready = _pids_done(queue) & alive
            victims = sorted(pid for pid in held if ready - {pid})
            if not victims:
                if queue.job_states()["done"] == 200:
                    break
                continue
            pid = rng.choice(victims)
            victim = next(w for w in workers if w.pid == pid)
            victim.kill()
            victim.communicate()
            killed_at = database_time(queue.engine)
            workers.remove(victim)
            workers.append(start_worker(db_url, runs, lease=lease))
            # A noop job takes milliseconds: the victim may have finished what it held between
            # the look and the kill. Only the jobs it still held when it died were interrupted.
            interrupted = _pids_running(queue).get(pid, [])
            if interrupted:
                kills.append((killed_at, interrupted))
        outputs = finish_all(workers, timeout=600)
        assert not any(LOCK_ERRORS.search(out) for out in outputs)
        assert len(kills) >= 4
        assert queue.job_states() == Counter(done=200)
        queue.assert_each_job_has_one_final_result(200)
        for killed_at, job_ids in kills:
            for job_id in job_ids:
                outcomes = [outcome for outcome, _ in queue.attempts(job_id)]
                assert "lost" in outcomes and outcomes[-1] == "done"
                # The attempt after the lost one started within 2 leases of the kill.
                lost = outcomes.index("lost")
                started = queue.rows(
                    select(Attempt.started_at).where(
                        Attempt.job_id == job_id, Attempt.number == lost + 2
                    )
                )[0][0]
                assert started - killed_at < 2 * lease


@pytest.mark.slow
def test_a_worker_paused_past_its_lease_cannot_write_its_result(db_url: str, tmp_path: Path):
    lease = 2.0
    plan_noop(db_url, 1, sleep_s=4.0)
    runs = tmp_path / "runs"
    paused = start_worker(db_url, runs, lease=lease, new_session=True)
    with Queue(db_url) as queue:
        deadline = time.time() + 60
        while not _pids_running(queue) and time.time() < deadline:
            time.sleep(0.1)
        assert list(_pids_running(queue)) == [paused.pid]
        os.killpg(paused.pid, signal.SIGSTOP)  # the whole machine freezes: worker and trainer
        try:
            taker = start_worker(db_url, runs, lease=lease)
            (taken_output,) = finish_all([taker], timeout=120)
        finally:
            os.killpg(paused.pid, signal.SIGCONT)
        (paused_output,) = finish_all([paused], timeout=120)
        assert "done job 1" in taken_output
        assert "lease lost" in paused_output and "done job 1" not in paused_output
        assert queue.job_states() == Counter(done=1)
        assert [outcome for outcome, _ in queue.attempts(1)] == ["lost", "done"]
        queue.assert_each_job_has_one_final_result(1)


@pytest.mark.slow
def test_failures_are_classified_retried_and_every_error_kept(db_url: str, tmp_path: Path):
    for fault in ("nan", "oom", "disk-full", "crash", "error"):
        plan_noop(db_url, 1, sweep=fault, max_attempts=2, fault=fault)
    (output,) = finish_all([start_worker(db_url, tmp_path / "runs")], timeout=300, code=1)
    assert "5 job(s) ended failed" in output
    with Queue(db_url) as queue:
        jobs = {json.loads(c)["task_params"]["fault"]: (i, s, a, e)
                for i, c, s, a, e in queue.rows(
                    select(Job.id, Job.config, Job.state, Job.attempts, Job.error))}  # fmt: skip
        assert {fault: job[1:3] for fault, job in jobs.items()} == {
            "nan": ("failed", 1),  # deterministic: not retried
            "error": ("failed", 1),
            "oom": ("failed", 2),  # transient: retried until max_attempts
            "disk-full": ("failed", 2),
            "crash": ("failed", 2),
        }
        expected_errors = {
            "nan": "training loss became nan at step 1",
            "error": "simulated failure (task noop)",
            "oom": "CUDA out of memory (simulated by task noop)",
            "disk-full": "No space left on device (simulated by task noop)",
            "crash": "training process killed by SIGKILL",
        }
        for fault, (job_id, _, attempts, error) in jobs.items():
            assert expected_errors[fault] in error
            history = queue.attempts(job_id)
            assert len(history) == attempts
            # Every attempt's own error is kept, not only the last.
            assert all(expected_errors[fault] in (e or "") for _, e in history)
            assert [o for o, _ in history] == ["requeued"] * (attempts - 1) + ["failed"]


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    import errno

    import lorabench.train.checkpoint as checkpoint
    from lorabench.train import train_job
    from lorabench.worker.child import _is_transient

    cfg = resolve_job(
        {"task": "noop", "variant": "lora", "lr": 1e-3, "seed": 0, "train_size": 16}
    )  # fmt: skip  (2 steps: checkpoints at 1 and at the end)
    real_save, saves = checkpoint.torch.save, []

    def save_until_the_disk_fills(state, handle):
        saves.append(state["step"])
        if len(saves) == 1:
            return real_save(state, handle)
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", save_until_the_disk_fills)
    with pytest.raises(
        OSError, match="disk full while writing .*previous checkpoint is intact"
    ) as e:
        train_job(cfg, tmp_path, checkpoint_every=1)
    assert saves == [1, 2]
    assert _is_transient(e.value)  # so the worker requeues the job
    assert checkpoint.load_checkpoint(tmp_path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left
    monkeypatch.setattr(checkpoint.torch, "save", real_save)  # space freed
    assert train_job(cfg, tmp_path, checkpoint_every=1).resumed_from_step == 1


@pytest.mark.slow
def test_a_worker_waits_out_a_database_restart(postgres_server, tmp_path: Path):
    db = postgres_server.new_database()
    plan_noop(db, 40, sleep_s=0.1)
    worker = start_worker(db, tmp_path / "runs", lease=8.0)
    with Queue(db) as queue:
        deadline = time.time() + 60
        while queue.job_states()["done"] < 5 and time.time() < deadline:
            time.sleep(0.2)
        postgres_server.pause(3.0)
    (output,) = finish_all([worker], timeout=300)
    assert "database unreachable" in output
    with Queue(db) as queue:
        assert queue.job_states() == Counter(done=40)
        queue.assert_each_job_has_one_final_result(40)
