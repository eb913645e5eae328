"""The database schema. Times are Unix seconds (float), comparable on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
ATTEMPT_OUTCOMES = ("running", "done", "failed", "requeued", "interrupted", "lost", "cancelled")


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


class Worker(SQLModel, table=True):
    __tablename__ = "worker"
    id: int | None = Field(default=None, primary_key=True)
    host: str
    pid: int
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
    split: str  # train | eval | summary
    name: str
    step: int
    epoch: int | None = None
    value: float | None  # NULL for NaN/inf: SQLite would turn NaN into NULL anyway
