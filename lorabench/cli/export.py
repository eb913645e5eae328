"""`lorabench export`: a finished job's adapter in PEFT's format, merged into its base model,
or in lorabench's own, with a model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, err_console, quiet_libraries, user_errors


def export_command(
    job_id: Annotated[int, typer.Argument(help="Job id (see lorabench status).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the adapter into.")],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="peft (falls back to native where PEFT lacks the variant), merged (a plain "
            "transformers model with the adapter merged in) or native.",
        ),
    ] = "peft",
    db: DbOption = None,
) -> None:
    """Write a job's trained adapter (PEFT's files, a merged model or lorabench's own) and a
    README.md model card with the job's config and its best epoch's scores."""
    from sqlalchemy import select

    from lorabench.cli.jobs import check_job_id
    from lorabench.config import JobConfig
    from lorabench.report.best_epoch import best_epoch
    from lorabench.store import opened
    from lorabench.store.models import Job, Sweep
    from lorabench.train.card import CardScores, JobRecord
    from lorabench.train.export import export_job

    quiet_libraries()
    with user_errors():
        check_job_id(job_id)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"{out_dir} is a file; the adapter is written into a folder")
        with opened(db, read_only=True) as engine:
            with engine.connect() as conn:
                row = conn.execute(
                    select(Job.config, Job.state, Job.out_dir, Sweep.name)
                    .join(Sweep, Sweep.id == Job.sweep_id)
                    .where(Job.id == job_id)
                ).first()
            best = best_epoch(engine, job_id) if row is not None else None  # for the card
        if row is None:
            raise ValueError(f"no job with id {job_id}")
        if row.out_dir is None:
            raise ValueError(f"job {job_id} has not started yet ({row.state}); nothing to export")
        if row.state != "done":
            err_console.print(
                f"[yellow]warning:[/] job {job_id} is {row.state}; exporting its last checkpoint"
            )
        scores = None if best is None else CardScores(**asdict(best))
        record = JobRecord(job_id=job_id, sweep=row.name, state=row.state, scores=scores)
        cfg = JobConfig(**json.loads(row.config))
        result = export_job(cfg, Path(row.out_dir), out_dir, fmt=format_, job=record)
    if result.note:
        err_console.print(f"[yellow]note:[/] {result.note}")
    for path in result.written:
        console.print(f"wrote {path}")
