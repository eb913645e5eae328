"""Queue semantics on SQLite and on a real PostgreSQL server: idempotence, leases, fencing,
retries, cancel."""

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.store import (
    LeaseLost,
    MetricRow,
    OutcomeRow,
    StoreError,
    cancel,
    claim,
    claim_pack,
    enqueue,
    fail,
    finish,
    heartbeat,
    open_engine,
    register_worker,
    release,
    retry,
)
from lorabench.store.models import Attempt, Job, Metric, Outcome, Sweep


def configs(n: int):
    return job_rows(
        resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4, "seed": s})
        for s in range(n)
    )


@pytest.fixture
def engine(db_url: str):
    engine = open_engine(db_url, create=True)
    yield engine
    engine.dispose()


def states(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Job.id, Job.state)).all())


def test_enqueue_is_idempotent(engine):
    first = enqueue(engine, "s", configs(3))
    again = enqueue(engine, "s", configs(4))
    assert (first.new, first.existing) == (3, 0)
    assert (again.new, again.existing) == (1, 3)
    assert len(states(engine)) == 4


def test_claim_takes_jobs_in_priority_then_id_order_and_each_once(engine):
    enqueue(engine, "low", configs(2), priority=5)
    enqueue(engine, "high", configs(3)[2:], priority=0)
    worker = register_worker(engine, "cpu")
    claimed = [claim(engine, worker, lease_seconds=60) for _ in range(4)]
    assert [c.job_id if c else None for c in claimed] == [3, 1, 2, None]
    assert claimed[0].config["seed"] == 2
    assert set(states(engine).values()) == {"running"}


def test_claim_can_be_limited_to_a_sweep(engine):
    enqueue(engine, "a", configs(1))
    enqueue(engine, "b", configs(2)[1:])
    worker = register_worker(engine, "cpu")
    assert claim(engine, worker, lease_seconds=60, sweep="b").job_id == 2
    assert claim(engine, worker, lease_seconds=60, sweep="b") is None


def test_expired_lease_is_reclaimed_and_the_old_token_is_fenced_out(engine):
    enqueue(engine, "s", configs(1))
    w1, w2 = register_worker(engine, "cpu"), register_worker(engine, "cpu")
    first = claim(engine, w1, lease_seconds=60)
    assert claim(engine, w2, lease_seconds=60) is None  # lease still valid
    second = claim(engine, w2, lease_seconds=60, now=time.time() + 61)
    assert second is not None and second.job_id == first.job_id
    assert second.attempt_number == 2 and second.lease_token != first.lease_token
    with pytest.raises(LeaseLost):
        heartbeat(engine, first.job_id, first.lease_token, worker_id=w1, lease_seconds=60)
    with pytest.raises(LeaseLost):
        finish(engine, first, [MetricRow("eval", "accuracy", 1, 0.5, epoch=1)])
    with pytest.raises(LeaseLost):
        fail(engine, first, "boom", transient=False)
    finish(engine, second, [MetricRow("eval", "accuracy", 1, 0.9, epoch=1)])
    with engine.connect() as conn:
        outcomes = conn.execute(
            select(Attempt.number, Attempt.outcome).order_by(Attempt.number)
        ).all()
        values = conn.execute(select(Metric.value)).scalars().all()
    assert outcomes == [(1, "lost"), (2, "done")]
    assert values == [0.9]  # the stale worker wrote nothing


def test_outcomes_are_written_with_the_metrics_and_fenced_by_the_lease(engine):
    from lorabench.outcomes import decode_outcomes, encode_outcomes

    enqueue(engine, "s", configs(1))
    w1, w2 = register_worker(engine, "cpu"), register_worker(engine, "cpu")
    first = claim(engine, w1, lease_seconds=60)
    second = claim(engine, w2, lease_seconds=60, now=time.time() + 61)
    stale = [OutcomeRow("eval", 1, encode_outcomes({"correct": [True, False]}))]
    with pytest.raises(LeaseLost):
        finish(engine, first, [MetricRow("eval", "accuracy", 1, 0.5, epoch=1)], outcomes=stale)
    rows = [OutcomeRow("eval", e, encode_outcomes({"prediction": [e, 1], "target": [1, 1]}))
            for e in (1, 2)]  # fmt: skip
    finish(engine, second, [MetricRow("eval", "accuracy", 1, 0.5, epoch=1)], outcomes=rows)
    with engine.connect() as conn:
        columns = (Outcome.job_id, Outcome.attempt_id, Outcome.split, Outcome.epoch, Outcome.data)
        stored = conn.execute(select(*columns).order_by(Outcome.epoch)).all()
    assert [tuple(r[:4]) for r in stored] == [(1, second.attempt_id, "eval", e) for e in (1, 2)]
    assert decode_outcomes(stored[1].data)["prediction"].tolist() == [2, 1]


def test_heartbeat_renews_the_lease_and_publishes_progress(engine):
    enqueue(engine, "s", configs(1))
    worker = register_worker(engine, "cpu")
    claimed = claim(engine, worker, lease_seconds=5)
    heartbeat(engine, claimed.job_id, claimed.lease_token, worker_id=worker, lease_seconds=600,
              progress={"step": 3})  # fmt: skip
    # Without the renewal this would be reclaimable 10 s from now.
    assert claim(engine, worker, lease_seconds=5, now=time.time() + 10) is None
    with engine.connect() as conn:
        assert json.loads(conn.execute(select(Job.progress)).scalar_one()) == {"step": 3}


def test_transient_failures_retry_until_max_attempts_then_fail_keeping_every_error(engine):
    enqueue(engine, "s", configs(1), max_attempts=2)
    worker = register_worker(engine, "cpu")
    first = claim(engine, worker, lease_seconds=60)
    assert fail(engine, first, "CUDA out of memory", transient=True) == "queued"
    second = claim(engine, worker, lease_seconds=60)
    assert fail(engine, second, "CUDA out of memory again", transient=True) == "failed"
    assert claim(engine, worker, lease_seconds=60) is None
    with engine.connect() as conn:
        job = conn.execute(select(Job.state, Job.attempts, Job.error)).one()
        errors = conn.execute(select(Attempt.error).order_by(Attempt.number)).scalars().all()
    assert job == ("failed", 2, "CUDA out of memory again (after 2 attempts)")
    assert errors == ["CUDA out of memory", "CUDA out of memory again"]


def test_deterministic_failure_is_not_retried(engine):
    enqueue(engine, "s", configs(1))
    worker = register_worker(engine, "cpu")
    assert (
        fail(engine, claim(engine, worker, lease_seconds=60), "loss is nan", transient=False)
        == "failed"
    )
    assert claim(engine, worker, lease_seconds=60) is None


def test_dead_worker_on_last_attempt_fails_the_job(engine):
    enqueue(engine, "s", configs(1), max_attempts=1)
    worker = register_worker(engine, "cpu")
    claim(engine, worker, lease_seconds=1)
    assert claim(engine, worker, lease_seconds=1, now=time.time() + 5) is None
    with engine.connect() as conn:
        state, error = conn.execute(select(Job.state, Job.error)).one()
    assert state == "failed" and "lease expired" in error


def test_interruption_requeues_without_spending_an_attempt(engine):
    enqueue(engine, "s", configs(1), max_attempts=1)
    worker = register_worker(engine, "cpu")
    release(
        engine, claim(engine, worker, lease_seconds=60), outcome="interrupted", reason="SIGTERM"
    )
    again = claim(engine, worker, lease_seconds=60)
    assert again is not None and again.attempt_number == 2
    with engine.connect() as conn:
        assert conn.execute(select(Job.attempts)).scalar_one() == 1


def test_cancel_and_retry(engine):
    enqueue(engine, "s", configs(3))
    worker = register_worker(engine, "cpu")
    running = claim(engine, worker, lease_seconds=60)
    assert cancel(engine, sweep="s") == (2, 1)
    beat = heartbeat(
        engine, running.job_id, running.lease_token, worker_id=worker, lease_seconds=60
    )
    assert beat.cancel_requested
    release(engine, running, outcome="cancelled", reason="cancelled")
    assert set(states(engine).values()) == {"cancelled"}
    assert retry(engine, sweep="s") == 3
    assert set(states(engine).values()) == {"queued"}


def test_read_only_engine_cannot_write(engine, db_url: str):
    enqueue(engine, "s", configs(1))
    reader = open_engine(db_url, read_only=True)
    with pytest.raises(Exception, match="readonly|read-only|attempt to write"):
        enqueue(reader, "s", configs(2))
    reader.dispose()
    assert len(states(engine)) == 1


def test_sqlite_on_a_network_filesystem_is_refused(tmp_path: Path, monkeypatch):
    import lorabench.store.engine as engine_module

    monkeypatch.setattr(engine_module, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(StoreError, match=r"network filesystem \(nfs4\).*PostgreSQL"):
        open_engine(str(tmp_path / "shared.db"), create=True)
    assert not (tmp_path / "shared.db").exists()


def test_schema_from_a_newer_lorabench_is_refused(engine, db_url: str):
    from lorabench.store.models import SCHEMA_VERSION, SchemaVersion

    with engine.begin() as conn:
        conn.execute(
            SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION + 1, applied_at=0)
        )
    engine.dispose()
    with pytest.raises(StoreError, match="newer lorabench"):
        open_engine(db_url)


def test_non_finite_metric_values_are_stored_as_null(engine):
    enqueue(engine, "s", configs(1))
    claimed = claim(engine, register_worker(engine, "cpu"), lease_seconds=60)
    finish(
        engine,
        claimed,
        [MetricRow("eval", "mcc", 1, float("nan")), MetricRow("eval", "acc", 1, 0.5)],
    )
    with engine.connect() as conn:
        rows = dict(conn.execute(select(Metric.name, Metric.value)).all())
    assert rows == {"mcc": None, "acc": 0.5}


def test_claim_pack_takes_jobs_that_differ_only_in_learning_rate(engine):
    sweep = [
        resolve_job({"task": "noop", "variant": "lora", "lr": lr, "seed": seed})
        for seed in (0, 1)
        for lr in (1e-4, 1e-3, 1e-2)
    ]
    enqueue(engine, "s", job_rows(sweep))
    worker = register_worker(engine, "cpu")
    first = claim_pack(engine, worker, size=2, lease_seconds=60)
    second = claim_pack(engine, worker, size=8, lease_seconds=60)
    third = claim_pack(engine, worker, size=8, lease_seconds=60)
    assert [[c.job_id for c in pack] for pack in (first, second, third)] == [[1, 2], [3], [4, 5, 6]]
    assert {c.config["seed"] for c in third} == {1}
    assert len({c.lease_token for c in first + second + third}) == 6  # a lease each
    assert claim_pack(engine, worker, size=8, lease_seconds=60) == []
    with engine.connect() as conn:
        assert conn.execute(select(Attempt.job_id).order_by(Attempt.id)).scalars().all() == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]


def test_claim_pack_takes_the_sweeps_own_pack_unless_told(engine):
    lrs = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    packed = [resolve_job({"task": "noop", "variant": "lora", "lr": lr, "seed": 0}) for lr in lrs]
    plain = [resolve_job({"task": "noop", "variant": "lora", "lr": lr, "seed": 1}) for lr in lrs]
    # The spec is for people: the queue reads the sweep's pack column, never the spec.
    enqueue(engine, "packed", job_rows(packed), spec_json=json.dumps({"pack": 1}), pack=3)
    enqueue(engine, "plain", job_rows(plain), spec_json=json.dumps({"pack": 5}))
    worker = register_worker(engine, "cpu")
    sizes = [len(claim_pack(engine, worker, size=None, lease_seconds=60, sweep="packed"))
             for _ in range(3)]  # fmt: skip
    assert sizes == [3, 2, 0]
    assert len(claim_pack(engine, worker, size=None, lease_seconds=60, sweep="plain")) == 1
    assert len(claim_pack(engine, worker, size=4, lease_seconds=60, sweep="plain", most=2)) == 2
    assert len(claim_pack(engine, worker, size=8, lease_seconds=60, sweep="plain")) == 2


def test_planning_again_sets_the_sweeps_pack(engine):
    jobs = job_rows(
        resolve_job({"task": "noop", "variant": "lora", "lr": lr, "seed": 0})
        for lr in (1e-4, 1e-3, 1e-2)
    )
    enqueue(engine, "s", jobs[:1], pack=4)
    again = enqueue(engine, "s", jobs, pack=2)  # the latest plan decides
    assert (again.new, again.existing) == (2, 1)
    with engine.connect() as conn:
        assert conn.execute(select(Sweep.pack)).scalars().all() == [2]
    worker = register_worker(engine, "cpu")
    assert len(claim_pack(engine, worker, size=None, lease_seconds=60)) == 2
    with pytest.raises(ValueError, match="pack must be at least 1"):
        enqueue(engine, "s", jobs, pack=0)


@pytest.mark.parametrize("preset", ["paper-glue", "paper-nlg"])
def test_a_preset_planned_with_pack_has_its_jobs_claimed_as_packs(db_url: str, preset: str):
    from lorabench.api import plan

    planned = plan(pack=3, db=db_url, preset=preset)
    assert planned.new > 0
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(Sweep.name, Sweep.pack)).all() == [(preset, 3)]
            spec = json.loads(conn.execute(select(Sweep.spec)).scalar_one())
        assert "sweeps" in spec  # a preset's layout, which the queue does not read
        worker = register_worker(engine, "cpu")
        packs = [claim_pack(engine, worker, size=None, lease_seconds=60) for _ in range(2)]
    finally:
        engine.dispose()
    for pack in packs:
        assert len(pack) == 3
        assert len({c.config["lr"] for c in pack}) == 3  # one learning rate each
        rest = [{k: v for k, v in c.config.items() if k != "lr"} for c in pack]
        assert all(other == rest[0] for other in rest)
