"""The halving queue under concurrent workers and kill -9, on SQLite and PostgreSQL: every
learning rate is trained once per rung it reaches, and the promotions are those a sequential
pass of the same rule over the same arrival order gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from halving_worker import score_of
from sqlalchemy import func, select
from test_halving import reference

from lorabench.api import plan
from lorabench.store import claim, open_engine, pause, register_worker
from lorabench.store.models import Attempt, Job, Rung

HERE = Path(__file__).parent
LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
TOP = 2  # epochs 9, rungs at epochs 1, 3, 9


def plan_brackets(db: str, *, ranks=(4, 8), seeds=(0, 1)) -> int:
    planned = plan({"task": "noop", "variant": "lora", "lr": LRS, "rank": list(ranks),
                    "seed": list(seeds), "epochs": 9, "name": "asha",
                    "search": {"method": "halving", "eta": 3}}, db=db)  # fmt: skip
    return planned.new


def start_worker(db: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "halving_worker.py"), db, str(TOP), *flags],
                            cwd=HERE.parent)  # fmt: skip


def sequential_check(db: str) -> None:
    """Per bracket: replay the arms' arrivals (an arm arrives at rung k when its last live
    seed reports k, in commit order: the bracket's lock orders them) through the reference
    rule, and compare with what the queue did."""
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        jobs = conn.execute(select(Job.id, Job.bracket_id, Job.arm, Job.rung, Job.state,
                                   Job.config)).all()  # fmt: skip
        rungs = conn.execute(select(Rung.id, Rung.job_id, Rung.rung).order_by(Rung.id)).all()
        paused_attempts = dict(conn.execute(
            select(Attempt.job_id, func.count()).where(Attempt.outcome == "paused")
            .group_by(Attempt.job_id)).all())  # fmt: skip
    engine.dispose()
    by_bracket = defaultdict(list)
    for job in jobs:
        by_bracket[job.bracket_id].append(job)
    for members in by_bracket.values():
        job_ids = {j.id for j in members}
        seeds_of = defaultdict(set)
        for j in members:
            seeds_of[j.arm].add(j.id)
        arm_of = {j.id: j.arm for j in members}
        seen: dict[tuple[str, int], set[int]] = defaultdict(set)
        order, scores = [], {}
        for _, job_id, rung in rungs:
            if job_id not in job_ids:
                continue
            arm = arm_of[job_id]
            seen[(arm, rung)].add(job_id)
            if seen[(arm, rung)] == seeds_of[arm]:
                order.append((arm, rung))
                configs = [json.loads(j.config) for j in members if j.arm == arm]
                scores[(arm, rung)] = sum(score_of(c, rung) for c in configs) / len(configs)
        reached, stopped = reference(order, scores, 3, sorted(seeds_of), TOP)
        for j in members:
            assert j.rung == reached[j.arm], (j.arm, j.rung, reached[j.arm])
            assert j.state == ("stopped" if j.arm in stopped else "done"), (j.arm, j.state)
            # Once per rung it reached: a pause at each rung but a done job's last.
            assert paused_attempts.get(j.id, 0) == j.rung + (j.state == "stopped")
        assert {j.arm for j in members if j.state == "done"}  # at least one arm in full
    assert len(rungs) == len({(job_id, rung) for _, job_id, rung in rungs})


@pytest.mark.slow
@pytest.mark.parametrize("workers", [6])
def test_concurrent_workers_promote_as_a_sequential_pass_would(db_url: str, workers: int):
    assert plan_brackets(db_url) == 2 * 2 * len(LRS)
    procs = [start_worker(db_url) for _ in range(workers)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    sequential_check(db_url)
    again = plan_brackets(db_url)  # re-planning a finished halving sweep adds nothing
    assert again == 0


def test_a_worker_killed_inside_a_promotion_changes_nothing_and_the_decision_is_taken_once(
    db_url: str,
):
    plan_brackets(db_url, ranks=(4,), seeds=(0,))
    killed = start_worker(db_url, "--die-in-settle")
    assert killed.wait(timeout=120) == -9
    engine = open_engine(db_url, read_only=True)
    with engine.connect() as conn:
        states = dict(conn.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        reported = conn.execute(select(func.count()).select_from(Rung)).scalar_one()
    engine.dispose()
    # It died on the report that completed a decision: that report and its decision are
    # gone together; its job is still leased to the dead worker.
    assert states.get("running") == 1
    assert "stopped" not in states and reported == states.get("paused", 0)
    # The lease runs out; the others finish the bracket, the dead one's job included.
    time.sleep(0.1)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(Job.__table__.update().where(Job.state == "running").values(
            lease_expires_at=0.0))  # fmt: skip
    engine.dispose()
    procs = [start_worker(db_url) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    sequential_check(db_url)


def test_a_job_reported_twice_after_a_lost_lease_is_fenced_out(tmp_path: Path):
    from lorabench.store import LeaseLost, RungRow

    db = str(tmp_path / "h.db")
    plan_brackets(db, ranks=(4,), seeds=(0,))
    engine = open_engine(db)
    first, second = register_worker(engine, "cpu"), register_worker(engine, "cpu")
    stale = claim(engine, first, lease_seconds=60)
    with engine.begin() as conn:
        conn.execute(Job.__table__.update().where(Job.id == stale.job_id).values(
            lease_expires_at=0.0))  # fmt: skip
    fresh = claim(engine, second, lease_seconds=60)
    assert fresh.job_id == stale.job_id
    assert pause(engine, fresh, [], RungRow(1, 0.5)) == "paused"
    with pytest.raises(LeaseLost):
        pause(engine, stale, [], RungRow(1, 0.9))
    with engine.connect() as conn:
        assert conn.execute(select(Rung.score)).scalars().all() == [0.5]
    engine.dispose()


@pytest.mark.slow
def test_a_halving_sweep_killed_mid_run_resumes_and_ends_as_the_rule_says(db_url: str, tmp_path):
    """Real `lorabench work` processes training noop jobs; the first is killed (-9) once a rung
    has been reported, a second one (after the lease ran out) finishes the sweep."""
    from test_faults import start_worker as start_real_worker

    plan({"task": "noop", "variant": "lora", "lr": LRS[:5], "epochs": 9, "name": "asha",
          "search": {"method": "halving", "eta": 3}}, db=db_url)  # fmt: skip
    first = start_real_worker(db_url, tmp_path / "runs", lease=3.0, new_session=True)
    engine = open_engine(db_url, read_only=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(Rung)).scalar_one() >= 3:
                break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = start_real_worker(db_url, tmp_path / "runs", lease=3.0)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    with engine.connect() as conn:
        states = sorted(conn.execute(select(Job.state)).scalars())
        rows = conn.execute(select(Rung.job_id, Rung.rung, Rung.step)).all()
        done = conn.execute(select(Job.id, Job.config).where(Job.state == "done")).all()
    engine.dispose()
    assert states.count("done") >= 1 and set(states) <= {"done", "stopped"}
    assert len(rows) == len({(job_id, rung) for job_id, rung, _ in rows})
    # Rungs end at epochs 1, 3 and 9 of a 1-step epoch.
    assert {(rung, step) for _, rung, step in rows} <= {(0, 1), (1, 3), (2, 9)}
    assert {step for job_id, _, step in rows if job_id in dict(done)} == {1, 3, 9}
