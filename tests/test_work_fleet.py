"""`work --gpu 0,1,2,3`: one supervised worker per device, CPU threads divided between them,
signals forwarded once, the worst exit code; `--threads` reaching the trainer; `work` exiting 1
when a job it ran ended failed (0 when every one succeeded or was requeued)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.store import enqueue, open_engine
from lorabench.store.models import Attempt, Job, Metric, Worker
from lorabench.worker import fleet
from lorabench.worker.fleet import run_fleet, split_gpus, thread_share

# A stand-in worker: records its arguments, OMP_NUM_THREADS and the signals it gets in
# <log dir>/<its --gpu value>-<pid>.json, says one line, then exits with the code its device
# asks for ("3" -> 3) or, for "wait", waits for SIGINT/SIGTERM (exit 130 after the first).
STUB = textwrap.dedent("""
    import json, os, signal, sys, time
    log_dir, args = sys.argv[1], sys.argv[2:]
    device = args[args.index("--gpu") + 1]
    got = []
    path = os.path.join(log_dir, f"{device}-{os.getpid()}.json")
    def save():  # whole or not at all: the test reads these files while the stubs run
        with open(path + ".tmp", "w") as f:
            json.dump({"args": args, "omp": os.environ.get("OMP_NUM_THREADS"), "got": got}, f)
        os.replace(path + ".tmp", path)
    def on(signum, _):
        got.append(signal.Signals(signum).name)
        save()
    signal.signal(signal.SIGINT, on)
    signal.signal(signal.SIGTERM, on)
    save()
    print(f"worker on {device}", flush=True)
    if device.isdigit():
        sys.exit(int(device))
    deadline = time.time() + 60
    while not got and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a second, forwarded-twice signal would arrive in this time
    save()
    sys.exit(130)
""")


@pytest.fixture
def stub(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    logs = tmp_path / "logs"
    logs.mkdir()
    return [sys.executable, str(script), str(logs)], logs


def records(logs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(logs.glob("*.json"))]


def test_split_gpus():
    assert split_gpus("0,1,2,3") == ["0", "1", "2", "3"]
    assert split_gpus(" cpu, CPU") == ["cpu", "cpu"]
    assert split_gpus(None) == []
    with pytest.raises(ValueError, match="a list of them \\(0,1,2,3\\) or 'all', not '0,x'"):
        split_gpus("0,x")
    with pytest.raises(ValueError, match="not '0,'"):
        split_gpus("0,")


def test_gpu_all_counts_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")
    assert split_gpus("all") == ["0", "1", "2"]  # CUDA numbers the visible ones from 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="--gpu all: no CUDA GPU is visible here"):
        split_gpus("all")


def test_threads_divide_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert [thread_share(n) for n in (1, 2, 3, 4, 32)] == [16, 8, 5, 4, 1]
    assert thread_share(4, threads=3) == 3


def test_each_device_gets_a_worker_with_its_threads_and_the_worst_code_wins(stub):
    command, logs = stub
    said: list[str] = []
    code = run_fleet(["0", "2", "1"], 5, ["--db", "x.db", "--exit-when-empty"], say=said.append,
                     command=command)  # fmt: skip
    assert code == 2
    assert sorted(said) == ["[gpu 0] worker on 0", "[gpu 1] worker on 1", "[gpu 2] worker on 2"]
    assert sorted((r["args"], r["omp"]) for r in records(logs)) == [
        (["--gpu", d, "--threads", "5", "--db", "x.db", "--exit-when-empty"], "5")
        for d in ("0", "1", "2")
    ]


def _fleet_process(command: list[str], devices: list[str]) -> subprocess.Popen:
    """The fleet in a process of its own (it installs signal handlers), like `work --gpu`."""
    code = (f"import sys; from lorabench.worker.fleet import run_fleet; "
            f"sys.exit(run_fleet({devices!r}, 1, [], command={command!r}))")  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _wait_for_records(logs: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(list(logs.glob("*.json"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(logs.glob("*.json"))) == count


def test_ctrl_c_reaches_every_worker_once_through_the_fleet(stub):
    command, logs = stub
    fleet_process = _fleet_process(command, ["wait", "wait"])
    _wait_for_records(logs, 2)
    # A terminal's Ctrl-C goes to the foreground process group: the workers are not in it.
    os.kill(fleet_process.pid, signal.SIGINT)
    out, _ = fleet_process.communicate(timeout=60)
    assert fleet_process.returncode == 130
    assert [r["got"] for r in records(logs)] == [["SIGINT"], ["SIGINT"]]
    assert out.splitlines() == ["[gpu wait] worker on wait"] * 2


def test_a_killed_fleet_leaves_no_worker_unsupervised(stub):
    command, logs = stub
    fleet_process = _fleet_process(command, ["wait", "wait"])
    _wait_for_records(logs, 2)
    fleet_process.kill()  # no chance to forward anything: the kernel sends SIGTERM
    fleet_process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(not r["got"] for r in records(logs)):
        time.sleep(0.05)
    assert [r["got"] for r in records(logs)] == [["SIGTERM"], ["SIGTERM"]]


def test_work_forwards_exactly_the_options_it_was_given(monkeypatch):
    monkeypatch.delenv("LORABENCH_DB", raising=False)  # else --db comes from the environment
    calls = []
    monkeypatch.setattr(fleet, "run_fleet", lambda *args: calls.append(args) or 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    result = CliRunner().invoke(app, [
        "work", "--gpu", "0,1,2,3", "--db", "x.db", "--sweep", "s", "--max-jobs", "3",
        "--exit-when-empty", "--grad-ckpt", "--lease-seconds", "200", "--runs-dir", "/r",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 workers (0, 1, 2, 3), 4 CPU thread(s) each" in result.output
    assert calls == [(["0", "1", "2", "3"], 4, [
        "--sweep", "s", "--max-jobs", "3", "--exit-when-empty", "--runs-dir", "/r",
        "--lease-seconds", "200.0", "--grad-ckpt", "--db", "x.db",
    ])]  # fmt: skip
    calls.clear()
    result = CliRunner().invoke(app, ["work", "--gpu", "cpu,cpu", "--threads", "3",
                                      "--no-exit-when-empty"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls == [(["cpu", "cpu"], 3, ["--no-exit-when-empty"])]
    bad = CliRunner().invoke(app, ["work", "--gpu", "0,gpu1"])
    assert bad.exit_code == 2 and "not '0,gpu1'" in bad.output


# --- real workers on the noop task ----------------------------------------------------------------


def plan_noop(db: str, seeds: int, *, max_attempts: int = 3, **params) -> None:
    configs = [resolve_job({"task": "noop", "variant": "lora", "lr": 1e-3, "seed": seed,
                            "task_params": params}) for seed in range(seeds)]  # fmt: skip
    engine = open_engine(db, create=True)
    enqueue(engine, f"noop-{'-'.join(map(str, params.values())) or 'ok'}", job_rows(configs),
            max_attempts=max_attempts)  # fmt: skip
    engine.dispose()


def rows(db: str, query) -> list:
    engine = open_engine(db, read_only=True)
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    finally:
        engine.dispose()


def threads_of(db: str) -> list[float]:
    return [v for (v,) in rows(db, select(Metric.value).where(Metric.name == "cpu_threads"))]


def work(db: str, tmp_path: Path, *args: str):
    runs = str(tmp_path / "runs")
    return CliRunner().invoke(app, ["work", "--db", db, "--exit-when-empty", "--poll-seconds",
                                    "0.2", "--runs-dir", runs, *args])  # fmt: skip


def test_threads_reach_the_trainer_and_a_failed_job_makes_the_exit_code_1(tmp_path: Path):
    db = str(tmp_path / "w.db")
    plan_noop(db, 1)
    result = work(db, tmp_path, "--gpu", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert threads_of(db) == [1.0]
    plan_noop(db, 1, fault="error")
    result = work(db, tmp_path, "--gpu", "cpu", "--threads", "2")
    assert result.exit_code == 1, result.output
    assert "1 job(s) ended failed; see lorabench status" in " ".join(result.output.split())
    assert sorted(threads_of(db)) == [1.0]  # a failed job writes no metrics


def test_a_requeued_job_is_no_failure(tmp_path: Path):
    db = str(tmp_path / "r.db")
    plan_noop(db, 1, max_attempts=2, fault="oom")  # transient: requeued once, then failed
    first = work(db, tmp_path, "--gpu", "cpu", "--max-jobs", "1")
    assert first.exit_code == 0, first.output
    assert rows(db, select(Job.state)) == [("queued",)]
    second = work(db, tmp_path, "--gpu", "cpu")
    assert second.exit_code == 1, second.output
    assert rows(db, select(Job.state)) == [("failed",)]


@pytest.mark.slow
def test_two_cpu_workers_share_the_queue_and_the_cpus(tmp_path: Path, monkeypatch):
    db = str(tmp_path / "f.db")
    plan_noop(db, 6, sleep_s=0.5)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    result = work(db, tmp_path, "--gpu", "cpu,cpu")
    assert result.exit_code == 0, result.output
    assert "2 workers (cpu, cpu), 2 CPU thread(s) each" in result.output
    assert "[cpu 0] worker on cpu" in result.output and "[cpu 1] worker on cpu" in result.output
    assert rows(db, select(Job.state, Job.attempts)) == [("done", 1)] * 6  # each done once
    assert Counter(o for (o,) in rows(db, select(Attempt.outcome))) == Counter(done=6)
    assert threads_of(db) == [2.0] * 6
    assert len(rows(db, select(Worker.id))) == 2
