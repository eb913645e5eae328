"""lorabench from Python: the functions the commands themselves call, for scripts and notebooks.

    import lorabench

    lorabench.plan({"name": "lr", "task": "bbc-news", "variant": ["lora", "rslora"],
                    "lr": [1e-4, 1e-3]}, db="sweeps.db")
    lorabench.run_worker(db="sweeps.db", sweep="lr", gpu="cpu")   # until the queue is empty
    results = lorabench.load_results("sweeps.db", sweep="lr")   # a pandas DataFrame
    lorabench.write_report(db="sweeps.db", table="lr", sweep="lr")  # reports/, as the CLI

`plan` is `lorabench plan`, `run_worker` is `lorabench work`, `load_results` is `lorabench
results`, `write_report` is `lorabench report` (not `report`: that is the `lorabench.report`
package): same arguments, same checks, same errors (a user mistake raises a ValueError subclass
whose message is the CLI's error line). Nothing here
imports torch until `run_worker` starts training, so `import lorabench` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from lorabench.config import JobConfig
    from lorabench.search_cost import SearchEstimate
    from lorabench.store import JobRow

__all__ = ["Planned", "WorkerRun", "load_results", "plan", "run_worker", "write_report"]


@dataclass(frozen=True)
class Planned:
    """What `plan` did: the sweep's name and its job count; how many jobs were new and how many
    already present (0 and 0 on a dry run); on a dry run, the estimates `plan --dry-run` prints
    (GPU-hours in total and per preset part, peak memory per job family, and for a halving
    sweep its expected epochs and GPU-hours against the full grid's: `search`)."""

    sweep: str
    jobs: int
    new: int = 0
    existing: int = 0
    dry_run: bool = False
    gpu_hours: float | None = None
    parts: tuple[tuple[str, int, float], ...] = ()  # (label, jobs, GPU-hours) per part
    memory: tuple[Any, ...] = field(default=(), repr=False)  # memory.families rows
    search: SearchEstimate | None = None  # a halving sweep's dry run


@dataclass(frozen=True)
class WorkerRun:
    """What `run_worker` did: the device it trained on, the jobs it handled (finished, failed
    or gave back) and how many of them ended failed."""

    device: str
    handled: int
    failed: int


def job_rows(jobs: Iterable[JobConfig], *, brackets_of: str | None = None) -> list[JobRow]:
    """Jobs as the queue stores them: canonical config JSON and the two hashes; with
    `brackets_of` (a halving sweep's name), each job's bracket within that sweep and its arm."""
    from lorabench.store import JobRow

    return [
        JobRow(
            job.canonical_json(),
            job.config_hash,
            job.group_hash,
            bracket_key=None if brackets_of is None else f"{brackets_of}:{job.bracket_hash}",
            arm=None if brackets_of is None else job.arm,
        )
        for job in jobs
    ]


def plan(
    sweep: str | Path | Mapping[str, Any] | None = None,
    /,
    overrides: Mapping[str, Any] | None = None,
    *,
    db: str | None = None,
    preset: str | None = None,
    dry_run: bool = False,
    max_jobs: int | None = None,
    **fields: Any,
) -> Planned:
    """Expand a sweep into jobs and add the new ones to the queue (`lorabench plan`).

    `sweep` is a sweep file (TOML path) or its contents as a mapping ({"task": "bbc-news",
    "lr": [1e-4, 1e-3], ...}: a list sweeps a field); `overrides` and keyword `fields` replace
    its keys (`lr=[1e-3]`, `name="mine"`, `max_attempts=2`); `preset` plans a paper preset
    instead. Every job is validated before any is written, and all are written in one
    transaction; a job already planned is not added again. A sweep of more than `max_jobs`
    jobs (default 100,000) is refused before one is built. `db`: a SQLite path or database URL
    (default ./lorabench.db, or LORABENCH_DB)."""
    from lorabench.cli.presets import gpu_hours, job_gpu_hours, load_preset, plan_preset
    from lorabench.config import MAX_JOBS_PER_PLAN, ConfigError, SweepSpec, check_plan_size
    from lorabench.memory import families
    from lorabench.search_cost import estimate_search
    from lorabench.store import enqueue, opened

    values = {**(overrides or {}), **fields}
    sweep_file = None
    if isinstance(sweep, Mapping):
        values = {**sweep, **values}
    elif sweep is not None:
        sweep_file = Path(sweep)
    max_jobs = MAX_JOBS_PER_PLAN if max_jobs is None else max_jobs
    if preset is not None:
        if sweep is not None:
            raise ConfigError("give a sweep or a preset, not both")
        planned = plan_preset(load_preset(preset), values)
        check_plan_size([spec for _, spec in planned.parts], max_jobs, name=planned.name)
        parts = [(label, spec.expand(max_jobs)) for label, spec in planned.parts]
        # Parts may share jobs (the sensitivity study's base point): each is planned once.
        jobs = list({job.config_hash: job for _, part in parts for job in part}.values())
        spec, spec_json = planned.parts[0][1], planned.spec_json()
    else:
        if sweep_file is not None:
            spec = SweepSpec.from_toml(sweep_file).override(values)
        else:
            source = "sweep" if isinstance(sweep, Mapping) else "command line"
            spec = SweepSpec.from_mapping(values, source=source)
        jobs = spec.expand(max_jobs)
        parts = [(spec.name, jobs)]
        spec_json = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    if dry_run:
        return Planned(
            sweep=spec.name, jobs=len(jobs), dry_run=True, gpu_hours=gpu_hours(jobs),
            parts=tuple((label, len(part), gpu_hours(part)) for label, part in parts),
            # Peak GPU memory per family of jobs that need the same (lorabench.memory).
            memory=tuple(families(job.model_dump(mode="json") for job in jobs)),
            search=estimate_search(spec.search, jobs, job_gpu_hours)
            if spec.search.halving else None,
        )  # fmt: skip
    with opened(db, create=True) as engine:
        halving = spec.search.halving  # a preset's parts share it (flags give every part the same)
        result = enqueue(
            engine,
            spec.name,
            job_rows(jobs, brackets_of=spec.name if halving else None),
            spec_json=spec_json,
            description=spec.description,
            max_attempts=spec.max_attempts,
            priority=spec.priority,
            pack=spec.pack,  # a preset's parts share it (flags give every part the same)
            tracking=spec.log,  # likewise
            search=spec.search.stored(),
        )
    return Planned(sweep=result.sweep, jobs=len(jobs), new=result.new, existing=result.existing)


def run_worker(
    *,
    db: str | None = None,
    gpu: str | None = None,
    sweep: str | None = None,
    exit_when_empty: bool = True,
    runs_dir: str | Path = "runs",
    **options: Any,
) -> WorkerRun:
    """Run one worker in this process (`lorabench work`): claim jobs (of `sweep`, or any), train
    each in a child process, write the metrics back; until the queue is empty
    (`exit_when_empty`, the default here: a script wants to go on) or `max_jobs` are done.

    `gpu`: a GPU index or "cpu" (default: GPU 0 when CUDA is available). `options` are `work`'s
    other options by their Python names: `max_jobs`, `lease_seconds`, `heartbeat_seconds`,
    `checkpoint_every`, `poll_seconds`, `pack`, `grad_ckpt`, `compile`, `threads`, `log`
    (tracking backends), `log_dir`. Progress is
    printed as by `lorabench work`. Ctrl-C (or SIGTERM) checkpoints the running job and gives
    it back to the queue without spending an attempt, then raises KeyboardInterrupt."""
    from lorabench.cli.common import console, err_console, quiet_libraries
    from lorabench.store import opened
    from lorabench.worker import Worker, WorkerSettings, WorkerView, pick_device

    quiet_libraries()
    device, warning = pick_device(gpu)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    settings = WorkerSettings(device=device, sweep=sweep, exit_when_empty=exit_when_empty,
                              runs_dir=Path(runs_dir), **options)  # fmt: skip
    with opened(db) as engine, WorkerView(console) as view:
        console.print(f"worker on [bold]{device}[/], database {engine.url}")
        worker = Worker(engine, settings, view)
        handled = worker.run()
    if worker.stop_requested.is_set():
        raise KeyboardInterrupt
    return WorkerRun(device=device, handled=handled, failed=worker.failed)


def load_results(
    db: str | None = None,
    *,
    sweep: str | None = None,
    task: str | None = None,
    where: Sequence[str] = (),
    splits: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every selected job and every value it logged as one tidy pandas DataFrame (`lorabench
    results`): one row per job x split x step x metric, the job's state, attempts, times, chosen
    epoch and every config field (flattened) repeated on its rows; a job without metrics has one
    row. `sweep`, `task` and `where` (["FIELD=VALUE", ...]) select jobs as `report` does;
    `splits` keeps only some of train, select, test, summary. The columns are listed in
    `lorabench.report.results`. The database is opened read-only."""
    from lorabench.report.results import load_results as build
    from lorabench.store import opened

    if isinstance(where, str):
        where = [where]
    with opened(db, read_only=True) as engine:
        return build(engine, sweep=sweep, task=task, where=list(where), splits=splits)


def write_report(
    *,
    db: str | None = None,
    table: str | None = None,
    figure: str | None = None,
    sweep: str | None = None,
    task: str | None = None,
    where: Sequence[str] = (),
    metric: str | None = None,
    rule: str = "best",
    select: str | None = None,
    formats: Sequence[str] = ("md", "csv", "png"),
    out: str | Path = "reports",
    compare: str | None = None,
) -> list[Path]:
    """Write a table and/or figure (`lorabench report`) into `out`; returns the files written.
    Tables are printed too. The database is opened read-only."""
    from lorabench.cli import report as command

    if isinstance(where, str):
        where = [where]
    return command.write_report(
        db=db, table=table, figure=figure, sweep=sweep, task=task, where=list(where),
        metric=metric, rule=rule, select=select, formats=list(formats), out=Path(out),
        compare=compare,
    )  # fmt: skip
