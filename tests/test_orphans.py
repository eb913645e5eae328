"""A killed worker leaves nothing behind, and a restart after a crash resumes at once.

Real `lorabench work` processes run `noop` jobs (a step is a sleep) while the tests kill them:
no process of a killed worker (fork server, trainer, resource tracker) may outlive it by more
than 5 s, an orphan never writes a checkpoint, a worker on the same machine reclaims a dead
worker's job at once, and a live worker's job is never taken, on SQLite and on PostgreSQL.
A worker's processes are found by the marker the worker puts in their environment.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.store import (
    StoreError,
    claim,
    database_time,
    enqueue,
    held_jobs,
    open_engine,
    reclaim,
    register_worker,
)
from lorabench.store.migrate import upgrade
from lorabench.store.models import SCHEMA_VERSION, Attempt, Job, Metric, SchemaVersion, Worker
from lorabench.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from lorabench.worker.lifeline import WORKER_PID_ENV, holder_state, process_identity

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process lifetimes are tied together on Linux"
)

GONE_WITHIN_S = 5.0


def noop_job(steps: int, sleep_s: float, seed: int = 0):
    params = {"sleep_s": sleep_s}
    return resolve_job({"task": "noop", "variant": "lora", "lr": 1e-3, "seed": seed,
                        "train_size": 8 * steps, "task_params": params})  # fmt: skip


def plan_job(db: str, *, steps: int, sleep_s: float) -> None:
    """One noop job of `steps` optimizer steps (batch size 8), each sleeping `sleep_s`."""
    engine = open_engine(db, create=True)
    enqueue(engine, "orphans", job_rows([noop_job(steps, sleep_s)]))
    engine.dispose()


def start_worker(db: str, runs: Path, *, env: dict[str, str] | None = None,
                 new_session: bool = False, lease: float = 120.0) -> subprocess.Popen:  # fmt: skip
    command = [
        sys.executable, "-m", "lorabench", "work", "--db", db, "--gpu", "cpu",
        "--exit-when-empty", "--poll-seconds", "0.2", "--runs-dir", str(runs),
        "--checkpoint-every", "1", "--lease-seconds", str(lease),
        "--heartbeat-seconds", str(lease / 4),
    ]  # fmt: skip
    environment = {**os.environ, **(env or {})}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=environment, start_new_session=new_session)  # fmt: skip


def wait_for(predicate, timeout: float, what: str, *workers: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for worker in workers:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited while waiting for {what}:\n{output(worker)}")
        time.sleep(0.02)
    for worker in workers:
        worker.kill()
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(map(output, workers)))


def output(worker: subprocess.Popen) -> str:
    if worker.poll() is None:
        return "(still running)"
    return worker.stdout.read() if worker.stdout else ""


def _state(pid: int) -> str | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def processes_of(worker_pid: int) -> dict[int, str]:
    """Running processes (zombies hold no memory: left out) that the worker started: every one
    carries the worker's marker in its environment. {pid: command line}."""
    marker = f"{WORKER_PID_ENV}={worker_pid}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker in environment and _state(int(entry)) not in (None, "Z", "X"):
            found[int(entry)] = command.decode(errors="replace")
    return found


def seconds_until_gone(worker_pid: int) -> float:
    """Seconds until no process of the (killed) worker runs; fails after GONE_WITHIN_S."""
    started = time.monotonic()
    while processes_of(worker_pid):
        elapsed = time.monotonic() - started
        assert elapsed < GONE_WITHIN_S, f"still running: {processes_of(worker_pid)}"
        time.sleep(0.02)
    return time.monotonic() - started


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.exists():
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def checkpoint_step(folder: Path) -> int:
    try:
        saved = load_checkpoint(folder)
    except (OSError, RuntimeError, EOFError):  # being replaced: look again
        return 0
    return 0 if saved is None else int(saved["step"])


def kill_right_after_a_checkpoint(worker: subprocess.Popen, folder: Path, *, group: bool) -> int:
    """SIGKILL the worker (or its whole process group) just after the trainer wrote a checkpoint
    (at step >= 2), so the next write would come a whole sleeping step later. Returns the step."""
    wait_for(lambda: checkpoint_step(folder) >= 2, 120, "a checkpoint at step 2", worker)
    started = processes_of(worker.pid).values()
    # The fork server and the trainer (forked from it), and multiprocessing's resource tracker.
    assert sum("multiprocessing.forkserver" in c for c in started) == 2, started
    assert sum("multiprocessing.resource_tracker" in c for c in started) == 1, started
    written = (folder / CHECKPOINT_NAME).stat().st_mtime_ns
    wait_for(lambda: (folder / CHECKPOINT_NAME).stat().st_mtime_ns != written, 30,
             "the next checkpoint", worker)  # fmt: skip
    if group:
        os.killpg(worker.pid, signal.SIGKILL)
    else:
        worker.kill()
    worker.wait()
    return checkpoint_step(folder)


@pytest.mark.slow
def test_a_worker_killed_while_training_takes_its_processes_and_writes_nothing_more(
    tmp_path: Path,
):
    db, runs = str(tmp_path / "queue.db"), tmp_path / "runs"
    plan_job(db, steps=200, sleep_s=0.5)
    worker = start_worker(db, runs)
    folder = runs / "job-000001"
    kill_right_after_a_checkpoint(worker, folder, group=False)
    at_kill = folder_state(folder)
    gone_after = seconds_until_gone(worker.pid)
    print(f"killed while training: its processes were gone after {gone_after:.2f} s")
    # A surviving trainer would write its next checkpoint within a step (0.5 s).
    time.sleep(1.5)
    assert folder_state(folder) == at_kill, f"written after the kill ({gone_after:.2f} s)"


SLOW_PRELOAD = '''
import os, sys, time
from pathlib import Path

try:
    _command = Path("/proc/self/cmdline").read_bytes()
except OSError:
    _command = b""
if b"multiprocessing.forkserver" in _command and os.environ.get("ORPHAN_TEST_DIR"):
    _folder = Path(os.environ["ORPHAN_TEST_DIR"])
    if os.environ.get("ORPHAN_TEST_MODE") == "before-arming":
        time.sleep(1.5)  # the worker dies before the fork server can arm itself

    class _SlowTorch:
        """The fork server's import of torch takes 60 s: killed workers must not wait for it."""

        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                sys.meta_path.remove(self)
                (_folder / "importing-torch").write_text(str(os.getpid()))
                time.sleep(60)
            return None

    sys.meta_path.insert(0, _SlowTorch())
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["preload", "before-arming"])
def test_a_worker_killed_while_its_fork_server_preloads_takes_it_along(tmp_path: Path, mode):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_PRELOAD)
    db, runs = str(tmp_path / "queue.db"), tmp_path / "runs"
    plan_job(db, steps=2, sleep_s=0.0)
    python_path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, "ORPHAN_TEST_DIR": str(tmp_path),
           "ORPHAN_TEST_MODE": mode}  # fmt: skip
    worker = start_worker(db, runs, env=env)

    def fork_server() -> bool:
        return any("multiprocessing.forkserver" in c for c in processes_of(worker.pid).values())

    if mode == "preload":  # the fork server armed itself (first in its preload), then torch
        wait_for(lambda: (tmp_path / "importing-torch").exists(), 120, "the preload", worker)
    else:  # killed as soon as the fork server runs: before it could arm itself
        wait_for(fork_server, 120, "the fork server", worker)
    assert fork_server()
    worker.kill()
    worker.wait()
    print(f"killed ({mode}): its processes were gone after {seconds_until_gone(worker.pid):.2f} s")
    assert not (runs / "job-000001").exists()


@pytest.mark.slow
def test_an_orphaned_trainer_exits_before_writing_even_if_the_kernel_spares_it(tmp_path: Path):
    """The belt to PR_SET_PDEATHSIG's braces: here the trainer's parent (this test) lives on,
    but the worker's end of its pipe closes as when the worker dies."""
    from lorabench.worker.child import WORKER_GONE_EXIT, run_child
    from lorabench.worker.messages import Progress

    config = noop_job(100, 0.5)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    worker_pipe, alive = context.Pipe(duplex=False)
    options = {"checkpoint_every": 1, "grad_ckpt": False, "compile": False}
    folder = tmp_path / "job"
    child = context.Process(
        target=run_child,
        args=(json.loads(config.canonical_json()), str(folder), "cpu", options, worker_pipe,
              events),
    )  # fmt: skip
    child.start()
    worker_pipe.close()
    try:
        wait_for(lambda: checkpoint_step(folder) >= 2, 120, "a checkpoint at step 2")
        written = (folder / CHECKPOINT_NAME).stat().st_mtime_ns
        wait_for(lambda: (folder / CHECKPOINT_NAME).stat().st_mtime_ns != written, 30,
                 "the next checkpoint")  # fmt: skip
        at_close = folder_state(folder)
        alive.close()  # as the worker's death would
        child.join(timeout=30)
        assert child.exitcode == WORKER_GONE_EXIT
        assert folder_state(folder) == at_close
        finals = []
        while not events.empty():
            message = events.get(timeout=1)
            if not isinstance(message, Progress):
                finals.append(message)
        assert finals == []  # no result either
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_the_checkpoint_after_evaluation_asks_the_write_guard_too(tmp_path: Path):
    from lorabench.train import train_job
    from lorabench.train.checkpoint import guard_writes

    class WorkerGone(Exception):
        pass

    asked = []

    def worker_gone() -> None:
        asked.append(True)
        raise WorkerGone

    guard_writes(worker_gone)
    try:
        with pytest.raises(WorkerGone):  # 2 steps: the only checkpoint is the epoch's last
            train_job(noop_job(2, 0.0), tmp_path / "job", checkpoint_every=1000)
    finally:
        guard_writes(None)
    assert asked == [True]
    assert not (tmp_path / "job").exists()


def attempts(db: str, job_id: int = 1) -> list[tuple]:
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Attempt.outcome, Attempt.resumed_from_step, Attempt.worker_id)
            .add_columns(Attempt.started_at)
            .where(Attempt.job_id == job_id)
            .order_by(Attempt.number)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def job_state(db: str, job_id: int = 1) -> str:
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        state = conn.execute(select(Job.state).where(Job.id == job_id)).scalar_one()
    engine.dispose()
    return state


def loss_steps(db: str, job_id: int = 1) -> list[int]:
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        steps = conn.execute(
            select(Metric.step)
            .where(Metric.job_id == job_id, Metric.split == "train", Metric.name == "loss")
            .order_by(Metric.step)
        ).scalars()
        steps = list(steps)
    engine.dispose()
    return steps


@pytest.mark.slow
def test_a_restart_right_after_a_crash_resumes_the_job_at_once(db_url: str, tmp_path: Path):
    runs, steps = tmp_path / "runs", 30
    plan_job(db_url, steps=steps, sleep_s=0.2)
    crashed = start_worker(db_url, runs, new_session=True)  # the default 120 s lease
    folder = runs / "job-000001"
    killed_at_step = kill_right_after_a_checkpoint(crashed, folder, group=True)
    engine = open_engine(db_url, read_only=True)
    killed_at = database_time(engine)
    engine.dispose()
    assert job_state(db_url) == "running"  # nobody else knows yet

    restarted = start_worker(db_url, runs)
    out, _ = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, out
    assert "worker finished: 1 job(s) handled" in out
    assert "is dead; reclaimed" in out
    history = attempts(db_url)
    assert [row[:2] for row in history] == [("lost", None), ("done", killed_at_step)]
    reclaimed_after = history[1][3] - killed_at
    assert reclaimed_after < 60  # at once: not when the 120 s lease runs out
    print(f"restart reclaimed the job {reclaimed_after:.2f} s after the kill")
    assert job_state(db_url) == "done"
    assert loss_steps(db_url) == list(range(1, steps + 1))  # the whole curve, once


@pytest.mark.slow
def test_a_live_workers_job_is_never_taken(tmp_path: Path):
    """A second worker with --exit-when-empty on the same host waits while the job runs (the
    job could come back to the queue), takes nothing, and exits once it is done."""
    db, runs = str(tmp_path / "queue.db"), tmp_path / "runs"
    plan_job(db, steps=24, sleep_s=0.5)
    first = start_worker(db, runs)
    folder = runs / "job-000001"
    wait_for(lambda: checkpoint_step(folder) >= 1, 120, "the job's first checkpoint", first)
    second = start_worker(db, runs)
    engine = open_engine(db, read_only=True)

    def second_registered() -> bool:
        with engine.connect() as conn:
            return conn.execute(select(Worker.id).where(Worker.pid == second.pid)).first()

    wait_for(second_registered, 60, "the second worker", second)
    engine.dispose()
    while True:
        exited = second.poll() is not None  # looked at first: it must not leave while running
        if job_state(db) != "running":
            break
        assert not exited, output(second)  # it waits while the job may come back
        time.sleep(0.05)
    first_out, _ = first.communicate(timeout=60)
    second_out, _ = second.communicate(timeout=60)
    assert "worker finished: 1 job(s) handled" in first_out, first_out
    assert "worker finished: 0 job(s) handled" in second_out, second_out
    assert "waiting: 1 running job(s)" in second_out
    assert [row[0] for row in attempts(db)] == ["done"]


def gone_process() -> tuple[int, str]:
    """The pid and identity of a process that ran on this machine and has ended."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)  # fmt: skip
    identity = process_identity(process.pid)
    process.communicate(b"")
    return process.pid, identity


@pytest.mark.slow
def test_a_job_of_a_worker_on_another_host_is_taken_only_when_its_lease_runs_out(
    tmp_path: Path,
):
    db, runs, lease = str(tmp_path / "queue.db"), tmp_path / "runs", 8.0
    plan_job(db, steps=2, sleep_s=0.0)
    engine = open_engine(db)
    pid, identity = gone_process()  # dead, were it on this host: the host must decide
    elsewhere = register_worker(engine, "cpu", process_start=identity)
    with engine.begin() as conn:
        conn.execute(update(Worker).where(Worker.id == elsewhere).values(host="elsewhere", pid=pid))
    held = claim(engine, elsewhere, lease_seconds=lease)
    with engine.connect() as conn:
        expires = conn.execute(select(Job.lease_expires_at)).scalar_one()
    engine.dispose()
    worker = start_worker(db, runs)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    assert "waiting: 1 running job(s)" in out and "worker finished: 1 job(s) handled" in out
    history = attempts(db)
    assert [row[:3] for row in history] == [("lost", None, elsewhere),
                                            ("done", None, history[1][2])]  # fmt: skip
    assert history[1][3] >= expires  # not a moment before the lease ran out
    assert held.job_id == 1


# Fast checks of the reclaim rules at the queue level, on both backends.


@pytest.fixture
def engine(db_url: str):
    engine = open_engine(db_url, create=True)
    yield engine
    engine.dispose()


def test_only_a_proven_dead_holder_on_this_host_loses_its_job_at_once(engine):
    enqueue(engine, "s", job_rows(noop_job(1, 0.0, seed) for seed in range(5)))
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # fmt: skip
    try:
        live_identity = process_identity(live.pid)
        machine, _, ticks = live_identity.rpartition(" ")
        gone_pid, gone_identity = gone_process()
        holders = {  # name: (host, pid, process_start)
            "live": (host, live.pid, live_identity),
            "reused pid": (host, live.pid, f"{machine} {int(ticks) - 1}"),
            "gone": (host, gone_pid, gone_identity),
            "other host": ("elsewhere", gone_pid, gone_identity),
            "no identity": (host, gone_pid, None),
        }
        ids = {}
        for name, (where, pid, start) in holders.items():
            ids[name] = register_worker(engine, "cpu", process_start=start)
            with engine.begin() as conn:
                conn.execute(
                    update(Worker).where(Worker.id == ids[name]).values(host=where, pid=pid)
                )
            assert claim(engine, ids[name], lease_seconds=600) is not None
        expected = {"live": "alive", "reused pid": "dead", "gone": "dead",
                    "other host": "unknown", "no identity": "unknown"}  # fmt: skip
        assert {n: holder_state(*holders[n]) for n in holders} == expected
        seen = held_jobs(engine, host=host, exclude_worker=ids["live"])
        by_worker = {job.worker_id: job for job in seen}
        assert set(by_worker) == {ids["reused pid"], ids["gone"]}  # own and elsewhere left out
        successor = register_worker(engine, "cpu", process_start=process_identity())
        dead = [by_worker[ids["reused pid"]], by_worker[ids["gone"]]]
        assert all(reclaim(engine, job, reason="dead") for job in dead)
        taken = []
        while (job := claim(engine, successor, lease_seconds=600)) is not None:
            taken.append(job.job_id)
        assert sorted(taken) == sorted(job.job_id for job in dead)
        assert not reclaim(engine, dead[0], reason="dead")  # fenced: it has moved on
        with engine.connect() as conn:
            outcomes = conn.execute(
                select(Attempt.job_id, Attempt.outcome, Attempt.error).order_by(Attempt.id)
            ).all()
            stopped = dict(conn.execute(select(Worker.id, Worker.stopped_at)).all())
        lost = {job for job, outcome, error in outcomes if outcome == "lost"}
        assert lost == set(taken)
        assert all(error == "dead" for _, outcome, error in outcomes if outcome == "lost")
        assert stopped[ids["gone"]] is not None and stopped[ids["live"]] is None
    finally:
        live.communicate(b"")


def test_a_database_of_the_previous_schema_gains_the_worker_identity_by_db_upgrade(db_url: str):
    engine = open_engine(db_url, create=True)
    with engine.begin() as conn:  # as lorabench with schema 1 left it
        conn.execute(text("DROP TABLE outcome"))
        conn.execute(text("ALTER TABLE worker DROP COLUMN process_start"))
        conn.execute(text("ALTER TABLE sweep DROP COLUMN pack"))
        conn.execute(text("ALTER TABLE sweep DROP COLUMN tracking"))
        conn.execute(text("DROP TABLE rung"))
        conn.execute(text("DROP TABLE bracket"))
        conn.execute(text("DROP INDEX ix_job_bracket_id"))
        for column in ("bracket_id", "arm", "rung"):
            conn.execute(text(f"ALTER TABLE job DROP COLUMN {column}"))
        conn.execute(text("ALTER TABLE sweep DROP COLUMN search"))
        conn.execute(SchemaVersion.__table__.delete())
        conn.execute(SchemaVersion.__table__.insert().values(version=1, applied_at=0))
    engine.dispose()
    for read_only in (True, False):  # nothing upgrades it silently, readers included
        with pytest.raises(StoreError, match="lorabench db upgrade"):
            open_engine(db_url, read_only=read_only)
    engine = open_engine(db_url, allow_older=True)  # what `lorabench db upgrade` does
    assert upgrade(engine).done == (
        "added worker.process_start",
        "created table outcome",
        "added sweep.pack",
        "added sweep.tracking",
        "added successive halving (bracket, rung, job.rung)",
    )
    assert upgrade(engine).done == ()  # once
    engine.dispose()
    engine = open_engine(db_url)
    assert register_worker(engine, "cpu", process_start="x y 1") == 1
    with engine.connect() as conn:
        versions = conn.execute(select(SchemaVersion.version)).scalars().all()
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))
        assert conn.execute(select(Worker.process_start)).scalar_one() == "x y 1"
    engine.dispose()
