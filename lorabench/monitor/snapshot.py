"""One read of the queue: per-sweep progress, throughput and ETA, workers, running/failed jobs.

Pure data, no rendering, so the numbers can be tested exactly. Every age and lease is measured
against the database's clock (`database_time`), the clock the workers' leases are written by.

Rules (README "Status"):
- throughput: jobs a worker finished (finished_at and started_at set: done, failed, or cancelled
  while running; cancelling a queued job is not work) in the last THROUGHPUT_WINDOW_SECONDS,
  divided by that window (shortened to the time since the sweep's first job started, so a young
  sweep is not under-rated). With none finished in the window: all such jobs of the sweep over
  the span from its first start to its last finish. None when nothing has finished yet.
- ETA: (queued + running + paused) / throughput; 0 when nothing remains; None without a
  throughput. A paused job (successive halving: it waits at a rung) may still go on.
- counts: every state a job of the sweep can take, zeros included: paused and stopped only in
  a sweep that searches by successive halving, whose brackets are summarised per rung
  (`monitor.brackets`).
- worker state: "stopped" if stopped_at is set; otherwise "dead" if it holds a running job whose
  lease has expired, or, holding none, its last heartbeat is older than DEAD_HEARTBEAT_SECONDS
  (2 x the default 120 s lease); otherwise "alive".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from lorabench.monitor.brackets import BracketProgress, read_brackets
from lorabench.store import database_time
from lorabench.store.models import JOB_STATES, Job, Sweep, Worker

THROUGHPUT_WINDOW_SECONDS = 600.0
DEAD_HEARTBEAT_SECONDS = 2 * 120.0
FINISHED_STATES = ("done", "failed", "cancelled", "stopped")
REMAINING_STATES = ("queued", "running", "paused")
HALVING_STATES = ("paused", "stopped")  # only a halving sweep's jobs take these
GRID_STATES = tuple(s for s in JOB_STATES if s not in HALVING_STATES)


@dataclass(frozen=True)
class SweepProgress:
    name: str
    counts: dict[str, int]  # every state its jobs can take (see the module doc), zeros included
    throughput_per_hour: float | None
    throughput_basis: str  # "last 10 min", "whole sweep" or "none yet"
    eta_seconds: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINISHED_STATES)

    @property
    def remaining(self) -> int:
        return sum(self.counts.get(s, 0) for s in REMAINING_STATES)


@dataclass(frozen=True)
class WorkerStatus:
    id: int
    host: str
    pid: int
    device: str
    job_id: int | None
    heartbeat_age: float
    state: str  # alive | stopped | dead


@dataclass(frozen=True)
class RunningJob:
    id: int
    sweep: str
    variant: str
    lr: float
    worker: str | None  # host:pid
    progress: dict[str, Any]
    lease_left: float | None


@dataclass(frozen=True)
class FailedJob:
    id: int
    variant: str
    lr: float
    attempts: int
    error: str  # the last line of the error


@dataclass(frozen=True)
class StatusSnapshot:
    now: float
    sweep_filter: str | None
    sweeps: list[SweepProgress] = field(default_factory=list)
    workers: list[WorkerStatus] = field(default_factory=list)
    running: list[RunningJob] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    brackets: list[BracketProgress] = field(default_factory=list)


def take_snapshot(
    engine: Engine, *, sweep: str | None = None, now: float | None = None
) -> StatusSnapshot:
    """Read the queue once; `now` overrides the database clock (tests)."""
    now = database_time(engine) if now is None else now
    scope = [Sweep.name == sweep] if sweep else []
    with engine.connect() as conn:
        halving = set(
            conn.execute(select(Sweep.name).where(Sweep.search.is_not(None), *scope)).scalars()
        )
        counts = conn.execute(
            select(Sweep.name, Job.state, func.count())
            .join(Job, Job.sweep_id == Sweep.id)
            .where(*scope)
            .group_by(Sweep.name, Job.state)
        ).all()
        worked = conn.execute(
            select(Sweep.name, Job.started_at, Job.finished_at)
            .join(Job, Job.sweep_id == Sweep.id)
            .where(Job.started_at.is_not(None), Job.finished_at.is_not(None), *scope)
        ).all()
        first_start = dict(
            conn.execute(
                select(Sweep.name, func.min(Job.started_at))
                .join(Job, Job.sweep_id == Sweep.id)
                .where(*scope)
                .group_by(Sweep.name)
            ).all()
        )
        running = conn.execute(
            select(
                Job.id,
                Sweep.name,
                Job.config,
                Job.progress,
                Job.lease_expires_at,
                Job.worker_id,
                Worker.host,
                Worker.pid,
            )  # fmt: skip
            .join(Sweep, Sweep.id == Job.sweep_id)
            .join(Worker, Worker.id == Job.worker_id, isouter=True)
            .where(Job.state == "running", *scope)
            .order_by(Job.id)
        ).all()
        failed = conn.execute(
            select(Job.id, Job.config, Job.attempts, Job.error)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Job.state == "failed", *scope)
            .order_by(Job.id)
        ).all()
        workers = conn.execute(
            select(
                Worker.id,
                Worker.host,
                Worker.pid,
                Worker.device,
                Worker.heartbeat_at,
                Worker.stopped_at,
            ).order_by(Worker.id)  # fmt: skip
        ).all()
        # Workers' current jobs over all sweeps: a worker's state does not depend on --sweep.
        held = conn.execute(
            select(Job.worker_id, Job.id, Job.lease_expires_at)
            .where(Job.state == "running", Job.worker_id.is_not(None))
            .order_by(Job.id)
        ).all()
        brackets = read_brackets(conn, scope) if halving else []

    by_sweep: dict[str, dict[str, int]] = {}
    for name, state, count in counts:
        states = JOB_STATES if name in halving else GRID_STATES
        by_sweep.setdefault(name, dict.fromkeys(states, 0))[state] = count
    spans: dict[str, list[tuple[float, float]]] = {}
    for name, started, finished in worked:
        spans.setdefault(name, []).append((started, finished))
    sweeps = [
        _progress(name, states, spans.get(name, []), first_start.get(name), now)
        for name, states in sorted(by_sweep.items())
    ]
    return StatusSnapshot(
        now=now,
        sweep_filter=sweep,
        sweeps=sweeps,
        workers=_workers(workers, held, now),
        running=[_running(row, now) for row in running],
        failed=[_failed(row) for row in failed],
        brackets=brackets,
    )


def _progress(
    name: str,
    counts: dict[str, int],
    worked: list[tuple[float, float]],
    first_start: float | None,
    now: float,
) -> SweepProgress:
    rate, basis = _throughput(worked, first_start, now)
    remaining = sum(counts.get(s, 0) for s in REMAINING_STATES)
    if remaining == 0:
        eta: float | None = 0.0
    elif rate:
        eta = remaining / rate * 3600
    else:
        eta = None
    return SweepProgress(name, counts, rate, basis, eta)


def _throughput(
    worked: list[tuple[float, float]], first_start: float | None, now: float
) -> tuple[float | None, str]:
    """Jobs per hour (see the module docstring) and what it was measured over."""
    if not worked or first_start is None:
        return None, "none yet"
    window = min(THROUGHPUT_WINDOW_SECONDS, now - first_start)
    recent = sum(1 for _, finished in worked if finished > now - THROUGHPUT_WINDOW_SECONDS)
    if recent and window > 0:
        return recent / window * 3600, "last 10 min"
    span = max(finished for _, finished in worked) - first_start
    if span <= 0:
        return None, "none yet"
    return len(worked) / span * 3600, "whole sweep"


def _workers(workers: list, held: list, now: float) -> list[WorkerStatus]:
    jobs: dict[int, tuple[int, float | None]] = {}
    for worker_id, job_id, expires in held:
        jobs.setdefault(worker_id, (job_id, expires))
    rows = []
    for w in workers:
        job_id, expires = jobs.get(w.id, (None, None))
        if w.stopped_at is not None:
            state = "stopped"
        elif job_id is not None:
            state = "dead" if expires is not None and expires < now else "alive"
        else:
            state = "dead" if now - w.heartbeat_at > DEAD_HEARTBEAT_SECONDS else "alive"
        rows.append(
            WorkerStatus(w.id, w.host, w.pid, w.device, job_id, now - w.heartbeat_at, state)
        )
    return rows


def _running(row: Any, now: float) -> RunningJob:
    job_id, sweep, config, progress, expires, worker_id, host, pid = row
    cfg = json.loads(config)
    worker = f"{host}:{pid}" if worker_id is not None and host is not None else None
    return RunningJob(
        id=job_id,
        sweep=sweep,
        variant=cfg["variant"],
        lr=cfg["lr"],
        worker=worker,
        progress=json.loads(progress or "{}"),
        lease_left=None if expires is None else expires - now,
    )


def _failed(row: Any) -> FailedJob:
    job_id, config, attempts, error = row
    cfg = json.loads(config)
    last_line = (error or "").strip().splitlines()[-1:] or [""]
    return FailedJob(job_id, cfg["variant"], cfg["lr"], attempts, last_line[0][:200])
