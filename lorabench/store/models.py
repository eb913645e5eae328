"""The database schema. Times are Unix seconds (float), comparable on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Column, Integer, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

# 1: the released lorabench. 2: worker.process_start (a worker on the same host can prove
# another one dead). 3: the outcome table (per-example evaluation results for paired tests).
# 4: sweep.pack (how many of a sweep's jobs a worker trains together, so the queue need not
# read the stored spec). 5: sweep.tracking (the experiment trackers its jobs log to).
# 6: successive halving: sweep.search, the bracket and rung tables, job.bracket_id/arm/rung.
# A new version needs a step in migrate.STEPS; `lorabench db upgrade` applies them.
SCHEMA_VERSION = 6

# paused: a halving job that finished a rung and waits for the promotion decision;
# stopped: one that lost a rung (final: its last score is not a full-budget score).
JOB_STATES = ("queued", "running", "paused", "done", "failed", "cancelled", "stopped")
# paused: the attempt ended at a halving rung (the job goes on, waits or stops).
ATTEMPT_OUTCOMES = (
    "running",
    "done",
    "paused",
    "failed",
    "requeued",
    "interrupted",
    "lost",
    "cancelled",
)


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(primary_key=True)
    applied_at: float


class Sweep(SQLModel, table=True):
    __tablename__ = "sweep"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    spec: str = Field(sa_column=Column(Text, nullable=False))  # JSON of the latest plan
    created_at: float
    # Jobs of this sweep a worker without --pack trains together (those that differ only in
    # learning rate): the latest plan's `pack`.
    pack: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default=text("1"))
    )
    # The tracking backends its jobs log to (a JSON list of names, e.g. ["tensorboard"]) unless
    # a worker's --log says otherwise: the latest plan's `log`. NULL: none.
    tracking: str | None = Field(default=None, sa_column=Column(Text))
    # The learning-rate search of its jobs (JSON: method, eta, min_budget, unit) for the
    # workers, which turn rungs into steps; NULL: a grid, every job trained in full.
    search: str | None = Field(default=None, sa_column=Column(Text))


class Bracket(SQLModel, table=True):
    """A successive-halving bracket: the jobs of one sweep that differ only in learning rate
    and seed. Its row is locked while a promotion is decided (store.halving)."""

    __tablename__ = "bracket"
    id: int | None = Field(default=None, primary_key=True)
    sweep_id: int = Field(foreign_key="sweep.id", index=True)
    key: str = Field(unique=True)  # the planner's hash of what its jobs share
    eta: int
    created_at: float


class Job(SQLModel, table=True):
    __tablename__ = "job"
    id: int | None = Field(default=None, primary_key=True)
    sweep_id: int = Field(foreign_key="sweep.id", index=True)
    config_hash: str = Field(unique=True)
    group_hash: str = Field(index=True)
    config: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of JobConfig
    state: str = Field(default="queued", index=True)
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 3
    worker_id: int | None = Field(default=None, foreign_key="worker.id")
    lease_token: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    error: str | None = Field(default=None, sa_column=Column(Text))
    out_dir: str | None = None
    progress: str | None = Field(default=None, sa_column=Column(Text))  # JSON, set by heartbeats
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float
    # Successive halving (NULL, NULL, 0 for a grid job): its bracket, its arm within it (the
    # learning rate, as text: the seeds of an arm are promoted together), and the rung it
    # trains toward, waits at (paused) or ended at (stopped, done).
    bracket_id: int | None = Field(default=None, index=True)
    arm: str | None = None
    rung: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )


class Worker(SQLModel, table=True):
    __tablename__ = "worker"
    id: int | None = Field(default=None, primary_key=True)
    host: str
    pid: int
    # "<boot id> <pid namespace> <start time in clock ticks>" of the worker's process (Linux
    # /proc), so that a later process with the same pid is not taken for it; NULL if unknown.
    process_start: str | None = Field(default=None, sa_column=Column(Text))
    device: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None


class Attempt(SQLModel, table=True):
    __tablename__ = "attempt"
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    worker_id: int = Field(foreign_key="worker.id")
    number: int
    lease_token: str
    outcome: str = "running"
    error: str | None = Field(default=None, sa_column=Column(Text))
    resumed_from_step: int | None = None
    started_at: float
    ended_at: float | None = None


class Metric(SQLModel, table=True):
    __tablename__ = "metric"
    __table_args__ = (UniqueConstraint("job_id", "attempt_id", "split", "name", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    attempt_id: int = Field(foreign_key="attempt.id")
    # train | eval (the split the task reports, its "test" split) | select (held out from
    # training, read only to choose epochs and learning rates) | summary
    split: str
    name: str
    step: int
    epoch: int | None = None
    value: float | None  # NULL for NaN/inf: SQLite would turn NaN into NULL anyway


class Rung(SQLModel, table=True):
    """A halving job's result at the end of one rung: the score promotion reads (the task's
    primary metric on the select split, higher is better) and the reported split's."""

    __tablename__ = "rung"
    __table_args__ = (UniqueConstraint("job_id", "rung"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    attempt_id: int = Field(foreign_key="attempt.id")
    rung: int
    step: int
    score: float | None  # NULL: not finite (ranks last)
    test_score: float | None = None
    created_at: float


class Outcome(SQLModel, table=True):
    """One evaluation's per-example results: a compressed ``numpy.savez`` archive holding
    ``correct`` (bool per example) or ``prediction`` and ``target`` (per example), in the
    order of the task's fixed evaluation set, so two jobs can be compared example by example."""

    __tablename__ = "outcome"
    __table_args__ = (UniqueConstraint("job_id", "attempt_id", "split", "epoch"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    attempt_id: int = Field(foreign_key="attempt.id")
    split: str  # eval | select, as in Metric
    epoch: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
