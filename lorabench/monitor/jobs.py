"""`lorabench jobs`: the jobs themselves, listed with filters, and one job in full (`jobs show`).

Pure data, no rendering (see jobs_view.py), so the rows can be tested exactly. A job's score is
the one the report gives it (`report.select.score_jobs`, `--select val`): the test score of the
primary metric at the epoch chosen on the held-out select split, or on the test split for a job
without select rows. Ages are measured by the database's clock, as in `status`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from lorabench.store import database_time, require_jobs, require_sweep
from lorabench.store.models import JOB_STATES, Attempt, Job, Metric, Sweep, Worker
from lorabench.suggest import unknown_name

DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Score:
    """A job's reported score (raw, not x100): `metric` at `epoch`, chosen `by` val or test."""

    metric: str
    value: float
    epoch: int
    by: str
    percent: bool

    def shown(self) -> str:
        return f"{self.value * 100:.2f}" if self.percent else f"{self.value:.4f}"


@dataclass(frozen=True)
class JobLine:
    id: int
    sweep: str
    variant: str
    task: str
    lr: float
    seed: int
    state: str
    attempts: int
    max_attempts: int
    score: Score | None
    updated_age: float  # seconds since the job's row last changed


@dataclass(frozen=True)
class JobList:
    lines: list[JobLine]
    matching: int  # jobs the filters select, before --limit


@dataclass(frozen=True)
class AttemptLine:
    number: int
    outcome: str
    worker: str  # host:pid
    device: str
    started: float
    ended: float | None
    resumed_from_step: int | None
    error: str | None


@dataclass(frozen=True)
class RunFile:
    name: str  # relative to the run folder
    size: int  # bytes
    modified: float


@dataclass(frozen=True)
class EpochLine:
    epoch: int
    step: int | None
    select: dict[str, float | None]
    test: dict[str, float | None]


@dataclass(frozen=True)
class JobDetail:
    id: int
    sweep: str
    state: str
    attempts: int
    max_attempts: int
    priority: int
    config: dict[str, Any]
    config_hash: str
    group_hash: str
    error: str | None
    created: float
    started: float | None
    finished: float | None
    updated_age: float
    progress: dict[str, Any]
    out_dir: str | None
    out_dir_here: bool  # the run folder exists on this machine
    files: list[RunFile]
    attempt_lines: list[AttemptLine]
    score: Score | None
    epochs: list[EpochLine]
    summary: dict[str, float | None]
    train: dict[str, float | int | None] = field(default_factory=dict)


def _check_names(
    kind: str,
    asked: Sequence[str],
    known: Sequence[str],
    *,
    present: Sequence[str] = (),
    lister: str = "",
) -> None:
    """A name neither `known` (the catalog) nor any job (`present`) has is a typo, said with a
    suggestion. A name only jobs have is fine: the catalog may have dropped it since."""
    for name in asked:
        if name not in known and name not in present:
            raise ValueError(unknown_name(kind, name, known, lister=lister, listed_as=f"{kind}s"))


def list_jobs(
    engine: Engine,
    *,
    sweep: str | None = None,
    states: Sequence[str] = (),
    variants: Sequence[str] = (),
    tasks: Sequence[str] = (),
    limit: int | None = DEFAULT_LIMIT,
    now: float | None = None,
) -> JobList:
    """Jobs in id order that match every filter given (each a list: any of its values), the
    first `limit` of them (None or 0: all). Unknown sweeps, states, variants and tasks raise."""
    from lorabench.catalog.task import task_names
    from lorabench.catalog.variant import variant_names

    _check_names("state", states, JOB_STATES)
    require_sweep(engine, sweep)
    now = database_time(engine) if now is None else now
    query = (
        select(Job.id, Sweep.name, Job.config, Job.state, Job.attempts, Job.max_attempts,
               Job.updated_at)
        .join(Sweep, Sweep.id == Job.sweep_id)
        .order_by(Job.id)
    )  # fmt: skip
    if sweep is not None:
        query = query.where(Sweep.name == sweep)
    if states:
        query = query.where(Job.state.in_(list(states)))
    with engine.connect() as conn:
        rows = [(row, json.loads(row.config)) for row in conn.execute(query)]
    _check_names(
        "variant",
        variants,
        variant_names(),
        present=[c["variant"] for _, c in rows],
        lister="lorabench variants",
    )
    _check_names("task", tasks, task_names(), present=[c["task"] for _, c in rows],
                 lister="lorabench tasks")  # fmt: skip
    kept = [(row, config) for row, config in rows
            if (not variants or config["variant"] in variants)
            and (not tasks or config["task"] in tasks)]  # fmt: skip
    shown = kept[:limit] if limit else kept
    scores = job_scores(engine, [row.id for row, _ in shown])
    lines = [
        JobLine(
            id=row.id,
            sweep=row.name,
            variant=config["variant"],
            task=config["task"],
            lr=config["lr"],
            seed=config["seed"],
            state=row.state,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            score=scores.get(row.id),
            updated_age=now - row.updated_at,
        )  # fmt: skip
        for row, config in shown
    ]
    return JobList(lines, len(kept))


def job_scores(engine: Engine, job_ids: Sequence[int]) -> dict[int, Score]:
    """Each finished job's reported score (module docstring); jobs without one are absent."""
    if not job_ids:
        return {}
    from lorabench.report.load import load_data
    from lorabench.report.select import Scoring, score_jobs

    scoring = Scoring(select="val")
    scored = score_jobs(load_data(engine, job_ids=job_ids), scoring)
    return {
        int(row.job_id): Score(
            metric=str(row.metric),
            value=float(row.score),
            epoch=int(row.epoch),
            by=str(row.by),
            percent=scoring.spec(str(row.task)).percent,
        )  # fmt: skip
        for row in scored.itertuples()
    }


def job_detail(engine: Engine, job_id: int, *, now: float | None = None) -> JobDetail:
    """Everything about one job: config, attempts and their workers, errors, times, its run
    folder (and files, if on this machine), and its metrics by epoch and in summary."""
    require_jobs(engine, [job_id])
    now = database_time(engine) if now is None else now
    with engine.connect() as conn:
        row = conn.execute(
            select(*Job.__table__.columns, Sweep.name.label("sweep_name"))
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Job.id == job_id)
        ).one()
        attempts = conn.execute(
            select(*Attempt.__table__.columns, Worker.host, Worker.pid, Worker.device)
            .join(Worker, Worker.id == Attempt.worker_id, isouter=True)
            .where(Attempt.job_id == job_id)
            .order_by(Attempt.number, Attempt.id)
        ).all()
        metrics = conn.execute(
            select(Metric.attempt_id, Metric.split, Metric.name, Metric.step, Metric.epoch,
                   Metric.value)
            .where(Metric.job_id == job_id)
            .order_by(Metric.attempt_id, Metric.step, Metric.id)
        ).all()  # fmt: skip
    # A job's metrics are written once, when it finishes: the last attempt's are its own.
    last = max((m.attempt_id for m in metrics), default=None)
    metrics = [m for m in metrics if m.attempt_id == last]
    files, here = _run_files(row.out_dir)
    return JobDetail(
        id=row.id, sweep=row.sweep_name, state=row.state, attempts=row.attempts,
        max_attempts=row.max_attempts, priority=row.priority, config=_full(json.loads(row.config)),
        config_hash=row.config_hash, group_hash=row.group_hash, error=row.error,
        created=row.created_at, started=row.started_at, finished=row.finished_at,
        updated_age=now - row.updated_at, progress=json.loads(row.progress or "{}"),
        out_dir=row.out_dir, out_dir_here=here, files=files,
        attempt_lines=[_attempt(a) for a in attempts],
        score=job_scores(engine, [job_id]).get(job_id) if row.state == "done" else None,
        epochs=_epochs(metrics), summary={m.name: m.value for m in metrics
                                          if m.split == "summary"},
        train=_train(metrics),
    )  # fmt: skip


def _full(config: dict[str, Any]) -> dict[str, Any]:
    """The stored config with the fields it leaves out at their defaults (select_split,
    base_dtype, task_params: stored only off their defaults, so old jobs keep their hash)."""
    from lorabench.config import JobConfig

    full = {}
    for name, spec in JobConfig.model_fields.items():
        if name in config:
            full[name] = config[name]
        elif not spec.is_required():
            full[name] = spec.get_default(call_default_factory=True)
    return full | config


def _attempt(row: Any) -> AttemptLine:
    """An attempt row joined with its worker's host, pid and device (None if the worker row is
    gone)."""
    return AttemptLine(
        number=row.number, outcome=row.outcome,
        worker=f"{row.host}:{row.pid}" if row.host is not None else f"worker {row.worker_id}",
        device=row.device or "-", started=row.started_at, ended=row.ended_at,
        resumed_from_step=row.resumed_from_step, error=row.error,
    )  # fmt: skip


def _run_files(out_dir: str | None) -> tuple[list[RunFile], bool]:
    """The files in the job's run folder, if this machine has it (workers may run elsewhere)."""
    if out_dir is None:
        return [], False
    root = Path(out_dir)
    if not root.is_dir():
        return [], False
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        files.append(RunFile(str(path.relative_to(root)), stat.st_size, stat.st_mtime))
    return files, True


def _epochs(metrics: list) -> list[EpochLine]:
    by_epoch: dict[int, EpochLine] = {}
    for m in metrics:
        if m.split not in ("eval", "select") or m.epoch is None:
            continue
        line = by_epoch.setdefault(m.epoch, EpochLine(m.epoch, m.step, {}, {}))
        (line.test if m.split == "eval" else line.select)[m.name] = m.value
    return [by_epoch[e] for e in sorted(by_epoch)]


def _train(metrics: list) -> dict[str, float | int | None]:
    """The loss curve in brief: steps logged, first, last and lowest loss."""
    losses = [m for m in metrics if m.split == "train" and m.name == "loss"]
    if not losses:
        return {}
    finite = [m.value for m in losses if m.value is not None]
    return {
        "steps": len(losses),
        "last_step": losses[-1].step,
        "first_loss": losses[0].value,
        "last_loss": losses[-1].value,
        "min_loss": min(finite) if finite else None,
    }
