"""Queue operations on the job table: enqueue, claim, heartbeat, fenced finish/fail, cancel, retry.

Every operation is one short transaction. On SQLite each write transaction starts with
BEGIN IMMEDIATE (see dialects.py), so concurrent workers queue on the lock instead of failing.
Writes that carry a job's outcome are fenced by its lease token: a worker whose lease was
taken over changes nothing.

Times come from the database's clock on a server (PostgreSQL), so workers on machines whose
clocks disagree still agree on when a lease runs out; SQLite lives on one machine, whose clock
every worker shares. What differs between the backends is asked of `dialects.dialect_of`.

The queue knows rows, not configs: a job is its canonical config JSON and two hashes
(`JobRow`), written by the planner; which jobs may share a pack is `packing.pack_key` of the
stored config; a sweep's pack size is its `pack` column, set by `enqueue`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, true, update

from lorabench.errors import StoreError
from lorabench.packing import pack_key
from lorabench.store.dialects import dialect_of
from lorabench.store.halving import brackets_of, lock_brackets, settle
from lorabench.store.models import (
    Attempt,
    Bracket,
    Job,
    Metric,
    Outcome,
    Rung,
    Sweep,
    Worker,
)

PACK_SCAN_LIMIT = 2000  # claimable jobs of a sweep looked through for pack mates


class LeaseLost(RuntimeError):
    """Another worker owns the job now; this worker's result must not be written."""


@dataclass(frozen=True)
class JobRow:
    """A job as the queue stores it: its config as canonical JSON (what a worker gets back,
    parsed, in `ClaimedJob.config`), the hash that identifies it (a job planned twice is
    stored once) and the hash of its group (the jobs it is compared with)."""

    config_json: str
    config_hash: str
    group_hash: str
    # Successive halving: the key of the job's bracket (None: a grid job) and its arm there
    # (the jobs of an arm, its seeds, are promoted together).
    bracket_key: str | None = None
    arm: str | None = None


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    config: dict[str, Any]
    lease_token: str
    attempt_id: int
    attempt_number: int
    out_dir: str | None
    # Successive halving: the rung it trains toward and its sweep's search (None: a grid job,
    # trained in full).
    rung: int = 0
    search: dict[str, Any] | None = None


@dataclass(frozen=True)
class MetricRow:
    split: str
    name: str
    step: int
    value: float
    epoch: int | None = None


@dataclass(frozen=True)
class OutcomeRow:
    """One evaluation's per-example results, encoded by `lorabench.outcomes.encode_outcomes`."""

    split: str
    epoch: int
    data: bytes


@dataclass(frozen=True)
class RungRow:
    """A halving job's result at the end of a rung (`pause`, or `finish` at the last rung):
    the select split's primary metric (higher is better) and the reported split's."""

    step: int
    score: float
    test_score: float | None = None


@dataclass(frozen=True)
class EnqueueResult:
    sweep: str
    new: int
    existing: int


def _clock(conn: Connection, now: float | None = None) -> float:
    """Unix time now, by the database's clock on a server; `now` overrides it (tests)."""
    if now is not None:
        return now
    return dialect_of(conn).clock(conn)


def database_time(engine: Engine) -> float:
    """The clock leases and heartbeats are measured by (see `_clock`)."""
    with engine.connect() as conn:
        return _clock(conn)


def enqueue(
    engine: Engine,
    sweep: str,
    jobs: Sequence[JobRow],
    *,
    spec_json: str = "{}",
    description: str = "",
    max_attempts: int = 3,
    priority: int = 0,
    pack: int = 1,
    tracking: Sequence[str] = (),
    search: Mapping[str, Any] | None = None,
) -> EnqueueResult:
    """Add the jobs not yet present (by config hash), all in one transaction. The sweep keeps
    the latest plan's `spec_json` (for people; the queue never reads it), description,
    `pack`: how many of its jobs a worker without `--pack` trains together (`claim_pack`),
    `tracking`: the backends its jobs log to unless a worker's `--log` says otherwise, and
    `search`: its successive-halving settings (None: a grid), with an integer `eta`; a
    sweep keeps the search it was first planned with (StoreError otherwise)."""
    if pack < 1:
        raise ValueError(f"pack must be at least 1, got {pack}")
    dialect = dialect_of(engine)
    search_json = json.dumps(dict(search), sort_keys=True) if search else None
    sweep_values = {"spec": spec_json, "description": description, "pack": pack,
                    "tracking": json.dumps(list(tracking)) if tracking else None}  # fmt: skip
    with engine.begin() as conn:
        now = _clock(conn)
        conn.execute(
            dialect.insert_ignoring_duplicates(Sweep).values(
                name=sweep, created_at=now, search=search_json, **sweep_values
            )
        )
        sweep_id, stored = conn.execute(
            select(Sweep.id, Sweep.search).where(Sweep.name == sweep)
        ).one()
        if stored != search_json and _has_jobs(conn, sweep_id):
            raise StoreError(
                f"sweep {sweep!r} was planned with search {_search_name(stored)}, not "
                f"{_search_name(search_json)}; plan this one under another name (--name)"
            )
        conn.execute(
            update(Sweep).where(Sweep.id == sweep_id).values(search=search_json, **sweep_values)
        )
        brackets = _brackets(conn, sweep_id, jobs, search, now)
        rows = [
            {
                "sweep_id": sweep_id,
                "config_hash": job.config_hash,
                "group_hash": job.group_hash,
                "config": job.config_json,
                "state": "queued",
                "priority": priority,
                "max_attempts": max_attempts,
                "created_at": now,
                "updated_at": now,
                "bracket_id": brackets.get(job.bracket_key),
                "arm": job.arm if job.bracket_key is not None else None,
            }
            for job in jobs
        ]
        # RETURNING names the rows really inserted: rowcount is unreliable for ON CONFLICT.
        inserted = dialect.insert_ignoring_duplicates(Job).returning(Job.id)
        new = len(conn.execute(inserted, rows).all()) if rows else 0
    return EnqueueResult(sweep=sweep, new=new, existing=len(jobs) - new)


def _has_jobs(conn: Connection, sweep_id: int) -> bool:
    return conn.execute(select(Job.id).where(Job.sweep_id == sweep_id).limit(1)).first() is not None


def _search_name(search_json: str | None) -> str:
    if search_json is None:
        return "grid"
    eta, budget, unit = (json.loads(search_json).get(k) for k in ("eta", "min_budget", "unit"))
    return f"halving (eta {eta}, min_budget {budget} {unit})"


def _brackets(
    conn: Connection,
    sweep_id: int,
    jobs: Sequence[JobRow],
    search: Mapping[str, Any] | None,
    now: float,
) -> dict[str | None, int]:
    """The bracket id of each bracket key the jobs name, created where new."""
    keys = sorted({job.bracket_key for job in jobs if job.bracket_key is not None})
    if not keys:
        return {}
    if not search:
        raise ValueError("jobs name brackets, but the sweep has no halving search")
    insert_new = dialect_of(conn).insert_ignoring_duplicates(Bracket)
    conn.execute(insert_new, [{"sweep_id": sweep_id, "key": key, "eta": int(search["eta"]),
                               "created_at": now} for key in keys])  # fmt: skip
    found = conn.execute(select(Bracket.key, Bracket.id).where(Bracket.key.in_(keys))).all()
    return dict(found)


def register_worker(engine: Engine, device: str, *, process_start: str | None = None) -> int:
    """A row for this worker process. `process_start` tells its process apart from a later
    one with the same pid (the worker passes boot id, pid namespace and start time): with it,
    a worker on the same host can prove this one dead (`held_jobs`, `reclaim`)."""
    with engine.begin() as conn:
        now = _clock(conn)
        return conn.execute(
            insert(Worker)
            .values(
                host=socket.gethostname(),
                pid=os.getpid(),
                process_start=process_start,
                device=device,
                started_at=now,
                heartbeat_at=now,
            )
            .returning(Worker.id)
        ).scalar_one()


def stop_worker(engine: Engine, worker_id: int) -> None:
    with engine.begin() as conn:
        now = _clock(conn)
        conn.execute(
            update(Worker).where(Worker.id == worker_id).values(stopped_at=now, heartbeat_at=now)
        )


def reap_expired(engine: Engine, now: float | None = None) -> int:
    """Settle running jobs whose worker died and that may not be claimed again."""
    with engine.begin() as conn:
        now = _clock(conn, now)
        expired = and_(Job.state == "running", Job.lease_expires_at < now)
        final = and_(expired, or_(Job.cancel_requested.is_(True), Job.attempts >= Job.max_attempts))
        brackets = lock_brackets(conn, brackets_of(conn, final))
        cancelled = conn.execute(
            update(Job)
            .where(expired, Job.cancel_requested.is_(True))
            .values(state="cancelled", lease_token=None, finished_at=now, updated_at=now)
        ).rowcount
        exhausted = conn.execute(
            update(Job)
            .where(expired, Job.attempts >= Job.max_attempts)
            .values(
                state="failed",
                lease_token=None,
                finished_at=now,
                updated_at=now,
                error=func.coalesce(Job.error, "")
                + "worker lost (lease expired) on the last allowed attempt",
            )
        ).rowcount
        conn.execute(
            update(Attempt)
            .where(
                Attempt.outcome == "running",
                Attempt.job_id.in_(select(Job.id).where(Job.state.in_(("cancelled", "failed")))),
            )
            .values(outcome="lost", ended_at=now, error="worker stopped heartbeating")
        )
        for bracket in brackets:
            settle(conn, bracket, now)
    return cancelled + exhausted


def _claimable(now: float, sweep: str | None):  # noqa: ANN202
    """Queued, or running with an expired lease (its worker died); attempts left; not cancelled."""
    condition = and_(
        or_(Job.state == "queued", and_(Job.state == "running", Job.lease_expires_at < now)),
        Job.attempts < Job.max_attempts,
        Job.cancel_requested.is_(False),
    )
    if sweep is not None:
        condition = and_(condition, Job.sweep_id.in_(select(Sweep.id).where(Sweep.name == sweep)))
    return condition


def _candidates(conn: Connection, condition, limit: int):  # noqa: ANN001, ANN202
    # A promoted halving job (a higher rung) first: its bracket's answer waits on it.
    query = (
        select(Job.id).where(condition).order_by(Job.priority, Job.rung.desc(), Job.id).limit(limit)
    )
    return dialect_of(conn).lock_candidates(query)


def _take(conn: Connection, which, worker_id: int, lease_seconds: float, now: float):  # noqa: ANN001
    """Lease the job `which` selects (an id or a one-row subquery) and open its attempt."""
    token = secrets.token_hex(16)
    row = conn.execute(
        update(Job)
        .where(Job.id == which)
        .values(
            state="running",
            worker_id=worker_id,
            lease_token=token,
            lease_expires_at=now + lease_seconds,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .returning(Job.id, Job.config, Job.attempts, Job.out_dir, Job.rung, Job.bracket_id)
    ).first()
    if row is None:
        return None
    # The previous holder (if any) died without a word: its attempt is lost.
    conn.execute(
        update(Attempt)
        .where(Attempt.job_id == row.id, Attempt.outcome == "running")
        .values(outcome="lost", ended_at=now, error="worker stopped heartbeating")
    )
    number = conn.execute(
        select(func.count()).select_from(Attempt).where(Attempt.job_id == row.id)
    ).scalar_one()
    attempt_id = conn.execute(
        insert(Attempt)
        .values(
            job_id=row.id, worker_id=worker_id, number=number + 1, lease_token=token, started_at=now
        )
        .returning(Attempt.id)
    ).scalar_one()
    search = None
    if row.bracket_id is not None:
        stored = conn.execute(
            select(Sweep.search).join(Job, Job.sweep_id == Sweep.id).where(Job.id == row.id)
        ).scalar_one()
        search = json.loads(stored) if stored else None
    return ClaimedJob(
        job_id=row.id,
        config=json.loads(row.config),
        lease_token=token,
        attempt_id=attempt_id,
        attempt_number=number + 1,
        out_dir=row.out_dir,
        rung=row.rung,
        search=search,
    )


def claim(
    engine: Engine,
    worker_id: int,
    *,
    lease_seconds: float,
    sweep: str | None = None,
    now: float | None = None,
) -> ClaimedJob | None:
    """Atomically take the next claimable job (see `_claimable`)."""
    reap_expired(engine, now)
    with engine.begin() as conn:
        now = _clock(conn, now)
        # A poll is a sign of life too: an idle worker must not look dead in `status`.
        conn.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now))
        candidate = _candidates(conn, _claimable(now, sweep), 1).scalar_subquery()
        return _take(conn, candidate, worker_id, lease_seconds, now)


def claim_pack(
    engine: Engine,
    worker_id: int,
    *,
    size: int | None,
    lease_seconds: float,
    sweep: str | None = None,
    now: float | None = None,
    packable: Callable[[dict[str, Any]], bool] = lambda _config: True,
    most: int | None = None,
) -> list[ClaimedJob]:
    """The next claimable job plus, if `packable(its config)`, up to size - 1 claimable jobs of
    its sweep that differ from it only in learning rate (`packing.pack_key`), each with its own
    lease and attempt. `size` None: the job's sweep decides (its `pack` column, see `enqueue`);
    `most` caps either."""
    first = claim(engine, worker_id, lease_seconds=lease_seconds, sweep=sweep, now=now)
    if first is None:
        return []
    if first.search is not None:  # a halving job trains alone, to its own rung's end
        return [first]
    with engine.begin() as conn:
        sweep_id, sweep_pack = conn.execute(
            select(Job.sweep_id, Sweep.pack)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Job.id == first.job_id)
        ).one()
        size = sweep_pack if size is None else size
        size = size if most is None else min(size, most)
        if size <= 1 or not packable(first.config):
            return [first]
        key, pack = pack_key(first.config), [first]
        now = _clock(conn, now)
        same_sweep = and_(_claimable(now, None), Job.sweep_id == sweep_id, Job.id != first.job_id)
        ids = [row.id for row in conn.execute(_candidates(conn, same_sweep, PACK_SCAN_LIMIT))]
        configs = conn.execute(select(Job.id, Job.config).where(Job.id.in_(ids))).all()
        mates = sorted(i for i, config in configs if pack_key(json.loads(config)) == key)
        for job_id in mates[: size - 1]:
            # Still claimable? Re-checked under the row lock the candidate query took.
            taken = _take(conn, _candidates(conn, and_(same_sweep, Job.id == job_id), 1)
                          .scalar_subquery(), worker_id, lease_seconds, now)  # fmt: skip
            if taken is not None:
                pack.append(taken)
    return pack


@dataclass(frozen=True)
class SweepOfJob:
    """What a worker needs to know of a claimed job's sweep: its name and its tracking."""

    name: str
    tracking: tuple[str, ...]


def sweep_of(engine: Engine, job_id: int) -> SweepOfJob:
    with engine.connect() as conn:
        name, tracking = conn.execute(
            select(Sweep.name, Sweep.tracking)
            .join(Job, Job.sweep_id == Sweep.id)
            .where(Job.id == job_id)
        ).one()
    names = json.loads(tracking) if tracking else []
    return SweepOfJob(name=name, tracking=tuple(str(n) for n in names))


def orphaned_jobs(engine: Engine, *, sweep: str | None = None, now: float | None = None) -> int:
    """Running jobs whose worker has missed heartbeats: probably dead, claimable once the lease
    runs out. A heartbeat renews the lease at least 4 times per lease length, so silence for
    half a lease means at least two beats were missed."""
    with engine.connect() as conn:
        now = _clock(conn, now)
        silent = now - Job.updated_at > (Job.lease_expires_at - Job.updated_at) / 2
        return conn.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.state == "running", silent, _select_jobs(sweep, None))
        ).scalar_one()


def running_jobs(engine: Engine, *, sweep: str | None = None) -> int:
    """Running jobs (in `sweep`, or all): each may still come back to the queue (its worker
    fails it transiently, is interrupted, or dies and its lease runs out)."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.state == "running", _select_jobs(sweep, None))
        ).scalar_one()


@dataclass(frozen=True)
class HeldJob:
    """A running job and the worker process holding it, for a liveness check."""

    job_id: int
    lease_token: str
    worker_id: int
    host: str
    pid: int
    process_start: str | None


def held_jobs(engine: Engine, *, host: str, exclude_worker: int | None = None) -> list[HeldJob]:
    """Running jobs held by workers on `host` that recorded their process start (all sweeps:
    a dead holder is dead for everyone), except `exclude_worker`'s own."""
    condition = and_(
        Job.state == "running",
        Job.lease_token.is_not(None),
        Worker.host == host,
        Worker.process_start.is_not(None),
    )
    if exclude_worker is not None:
        condition = and_(condition, Worker.id != exclude_worker)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Job.id, Job.lease_token, Worker.id, Worker.host, Worker.pid)
            .add_columns(Worker.process_start)
            .join(Worker, Worker.id == Job.worker_id)
            .where(condition)
            .order_by(Job.id)
        ).all()
    return [HeldJob(*row) for row in rows]


def reclaim(engine: Engine, held: HeldJob, *, reason: str) -> bool:
    """The holder of `held` is known to be dead: end its lease now, so the job is claimable at
    once (and resumes from its checkpoint), record its attempt as lost and its worker as
    stopped. Fenced by the lease token and holder: False if the job has moved on meanwhile
    (finished, released, or already taken over), and then nothing changes."""
    with engine.begin() as conn:
        now = _clock(conn)
        ended = conn.execute(
            update(Job)
            .where(_fenced(held.job_id, held.lease_token), Job.worker_id == held.worker_id)
            .values(lease_expires_at=now, updated_at=now)
        ).rowcount
        if not ended:
            return False
        conn.execute(
            update(Attempt)
            .where(
                Attempt.job_id == held.job_id,
                Attempt.lease_token == held.lease_token,
                Attempt.outcome == "running",
            )
            .values(outcome="lost", ended_at=now, error=reason)
        )
        conn.execute(
            update(Worker)
            .where(Worker.id == held.worker_id, Worker.stopped_at.is_(None))
            .values(stopped_at=now)
        )
    return True


def _fenced(job_id: int, token: str):  # noqa: ANN202
    return and_(Job.id == job_id, Job.lease_token == token, Job.state == "running")


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: bool


def heartbeat(
    engine: Engine,
    job_id: int,
    token: str,
    *,
    worker_id: int,
    lease_seconds: float,
    progress: dict[str, Any] | None = None,
) -> Heartbeat:
    """Renew the lease (and publish progress). Raises LeaseLost if the job is no longer ours."""
    with engine.begin() as conn:
        now = _clock(conn)
        values: dict[str, Any] = {"lease_expires_at": now + lease_seconds, "updated_at": now}
        if progress is not None:
            values["progress"] = json.dumps(progress)
        renewed = conn.execute(update(Job).where(_fenced(job_id, token)).values(**values)).rowcount
        conn.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now))
        if not renewed:
            raise LeaseLost(f"job {job_id}: lease lost (another worker took it over)")
        cancel = conn.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar_one()
    return Heartbeat(cancel_requested=bool(cancel))


def set_out_dir(engine: Engine, job_id: int, token: str, out_dir: str) -> None:
    with engine.begin() as conn:
        if not conn.execute(
            update(Job).where(_fenced(job_id, token)).values(out_dir=out_dir)
        ).rowcount:
            raise LeaseLost(f"job {job_id}: lease lost before it started")


def finish(
    engine: Engine,
    claimed: ClaimedJob,
    metrics: Iterable[MetricRow],
    *,
    outcomes: Iterable[OutcomeRow] = (),
    resumed_from_step: int | None = None,
    rung: RungRow | None = None,
) -> None:
    """Mark the job done and store its metrics and outcomes (and, for a halving job, its last
    rung's result), atomically. Raises LeaseLost if fenced out (and then writes nothing)."""
    _end_segment(engine, claimed, "done", metrics, outcomes, resumed_from_step, rung)


def pause(
    engine: Engine,
    claimed: ClaimedJob,
    metrics: Iterable[MetricRow],
    rung: RungRow,
    *,
    outcomes: Iterable[OutcomeRow] = (),
    resumed_from_step: int | None = None,
) -> str:
    """A halving job reached the end of its rung (`claimed.rung`, short of its full length):
    store its metrics so far and the rung's result, and let its bracket decide at once (store
    .halving). Returns the job's state after the decision: queued (it goes on to the next
    rung), paused (it waits for more results) or stopped. Raises LeaseLost if fenced out."""
    return _end_segment(engine, claimed, "paused", metrics, outcomes, resumed_from_step, rung)


def _end_segment(  # noqa: PLR0913
    engine: Engine,
    claimed: ClaimedJob,
    state: str,
    metrics: Iterable[MetricRow],
    outcomes: Iterable[OutcomeRow],
    resumed_from_step: int | None,
    rung: RungRow | None,
) -> str:
    with engine.begin() as conn:
        now = _clock(conn)
        bracket = _locked_bracket(conn, claimed.job_id)
        if state == "paused" and bracket is None:
            raise ValueError(f"job {claimed.job_id} is in no halving bracket: it cannot pause")
        values: dict[str, Any] = {"state": state, "lease_token": None, "lease_expires_at": None,
                                  "updated_at": now, "error": None}  # fmt: skip
        if state == "done":
            values["finished_at"] = now
        ended = conn.execute(
            update(Job).where(_fenced(claimed.job_id, claimed.lease_token)).values(**values)
        ).rowcount
        if not ended:
            raise LeaseLost(f"job {claimed.job_id}: lease lost; result discarded")
        _write_results(conn, claimed, metrics, outcomes)
        if rung is not None and bracket is not None:
            conn.execute(delete(Rung).where(Rung.job_id == claimed.job_id,
                                            Rung.rung == claimed.rung))  # fmt: skip
            conn.execute(insert(Rung).values(
                job_id=claimed.job_id, attempt_id=claimed.attempt_id, rung=claimed.rung,
                step=rung.step, score=_finite(rung.score), test_score=_finite(rung.test_score),
                created_at=now,
            ))  # fmt: skip
        _end_attempt(conn, claimed, state, None, now, resumed_from_step)
        if bracket is not None:
            settle(conn, bracket, now)
        return conn.execute(select(Job.state).where(Job.id == claimed.job_id)).scalar_one()


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _locked_bracket(conn: Connection, job_id: int) -> int | None:
    """The job's bracket, its row locked (before the job's: see halving.lock_brackets)."""
    bracket = conn.execute(select(Job.bracket_id).where(Job.id == job_id)).scalar_one_or_none()
    lock_brackets(conn, [bracket])
    return bracket


def _write_results(
    conn: Connection,
    claimed: ClaimedJob,
    metrics: Iterable[MetricRow],
    outcomes: Iterable[OutcomeRow],
) -> None:
    """The job's metrics and outcomes: its whole history so far, as the trainer reports it at
    the end of each segment, replacing what an earlier segment (a halving rung) stored."""
    conn.execute(delete(Metric).where(Metric.job_id == claimed.job_id))
    conn.execute(delete(Outcome).where(Outcome.job_id == claimed.job_id))
    rows = [
        {
            "job_id": claimed.job_id,
            "attempt_id": claimed.attempt_id,
            "split": m.split,
            "name": m.name,
            "step": m.step,
            "epoch": m.epoch,
            "value": m.value if math.isfinite(m.value) else None,
        }
        for m in metrics
    ]
    if rows:
        conn.execute(insert(Metric), rows)
    kept = [{"job_id": claimed.job_id, "attempt_id": claimed.attempt_id, "split": o.split,
             "epoch": o.epoch, "data": o.data} for o in outcomes]  # fmt: skip
    if kept:
        conn.execute(insert(Outcome), kept)


def fail(
    engine: Engine,
    claimed: ClaimedJob,
    error: str,
    *,
    transient: bool,
    resumed_from_step: int | None = None,
) -> str:
    """Record a failure. Transient ones requeue the job while attempts remain.

    Returns the job's new state. Raises LeaseLost if fenced out.
    """
    with engine.begin() as conn:
        now = _clock(conn)
        bracket = _locked_bracket(conn, claimed.job_id)
        job = conn.execute(
            select(Job.attempts, Job.max_attempts).where(
                _fenced(claimed.job_id, claimed.lease_token)
            )
        ).first()
        if job is None:
            raise LeaseLost(f"job {claimed.job_id}: lease lost; failure not recorded")
        retry = transient and job.attempts < job.max_attempts
        state = "queued" if retry else "failed"
        message = error if retry or not transient else f"{error} (after {job.attempts} attempts)"
        conn.execute(
            update(Job)
            .where(_fenced(claimed.job_id, claimed.lease_token))
            .values(
                state=state,
                error=message,
                lease_token=None,
                lease_expires_at=None,
                worker_id=None if retry else Job.worker_id,
                finished_at=None if retry else now,
                updated_at=now,
            )
        )
        _end_attempt(
            conn, claimed, "requeued" if retry else "failed", error, now, resumed_from_step
        )
        if bracket is not None and not retry:
            settle(conn, bracket, now)  # an arm may be gone: its rung may be complete now
    return state


def release(
    engine: Engine,
    claimed: ClaimedJob,
    *,
    outcome: str,
    reason: str,
    resumed_from_step: int | None = None,
) -> None:
    """Give the job back without counting the attempt (Ctrl-C, SIGTERM) or cancel it."""
    if outcome not in ("interrupted", "cancelled"):
        raise ValueError(f"release outcome must be interrupted or cancelled, not {outcome!r}")
    with engine.begin() as conn:
        now = _clock(conn)
        bracket = _locked_bracket(conn, claimed.job_id)
        values: dict[str, Any] = {
            "lease_token": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if outcome == "interrupted":
            values.update(state="queued", worker_id=None, attempts=Job.attempts - 1)
        else:
            values.update(state="cancelled", finished_at=now, error=reason)
        if not conn.execute(
            update(Job).where(_fenced(claimed.job_id, claimed.lease_token)).values(**values)
        ).rowcount:
            raise LeaseLost(f"job {claimed.job_id}: lease lost")
        _end_attempt(conn, claimed, outcome, reason, now, resumed_from_step)
        if bracket is not None and outcome == "cancelled":
            settle(conn, bracket, now)


def _end_attempt(conn, claimed, outcome, error, now, resumed_from_step) -> None:  # noqa: ANN001
    conn.execute(
        update(Attempt)
        .where(Attempt.id == claimed.attempt_id)
        .values(outcome=outcome, error=error, ended_at=now, resumed_from_step=resumed_from_step)
    )


def _select_jobs(sweep: str | None, job_ids: Sequence[int] | None):  # noqa: ANN202
    condition = and_(true())
    if sweep is not None:
        condition = and_(condition, Job.sweep_id.in_(select(Sweep.id).where(Sweep.name == sweep)))
    if job_ids:
        condition = and_(condition, Job.id.in_(list(job_ids)))
    return condition


# The states `cancel` ends at once; a running job is asked to stop instead.
CANCELLED_AT_ONCE = ("queued", "paused")


def cancel(
    engine: Engine, *, sweep: str | None = None, job_ids: Sequence[int] | None = None
) -> tuple[int, int]:
    """Cancel queued jobs (and halving jobs waiting at a rung) now and ask running ones to
    stop. Returns (cancelled, requested)."""
    which = _select_jobs(sweep, job_ids)
    with engine.begin() as conn:
        now = _clock(conn)
        brackets = lock_brackets(conn, brackets_of(conn, which))
        cancelled = conn.execute(
            update(Job)
            .where(which, Job.state.in_(CANCELLED_AT_ONCE))
            .values(state="cancelled", finished_at=now, updated_at=now, error="cancelled")
        ).rowcount
        requested = conn.execute(
            update(Job)
            .where(which, Job.state == "running")
            .values(cancel_requested=True, updated_at=now)
        ).rowcount
        for bracket in brackets:
            settle(conn, bracket, now)
    return cancelled, requested


def retry(
    engine: Engine,
    *,
    sweep: str | None = None,
    job_ids: Sequence[int] | None = None,
    states: Sequence[str] = ("failed", "cancelled"),
) -> int:
    """Queue failed/cancelled jobs again with a fresh attempt budget. A halving job goes back
    to the rung it ended at, and rejoins its bracket's decisions from there."""
    which = and_(_select_jobs(sweep, job_ids), Job.state.in_(list(states)))
    with engine.begin() as conn:
        now = _clock(conn)
        brackets = lock_brackets(conn, brackets_of(conn, which))
        retried = conn.execute(
            update(Job)
            .where(which)
            .values(
                state="queued",
                attempts=0,
                error=None,
                cancel_requested=False,
                worker_id=None,
                finished_at=None,
                updated_at=now,
            )
        ).rowcount
        for bracket in brackets:
            settle(conn, bracket, now)
    return retried
