"""`lorabench retry`, `cancel`: steer the queue (`status` lives in status.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, split_list, user_errors

JobIds = Annotated[str | None, typer.Option("--jobs", help="Comma-separated job ids.")]
SweepOption = Annotated[str | None, typer.Option(help="Only this sweep.")]


def _ids(raw: str | None) -> list[int] | None:
    items = split_list(raw)
    if items is None:
        return None
    if not all(item.isdigit() for item in items):
        raise ValueError(f"--jobs takes comma-separated job ids, got {raw!r}")
    return [int(item) for item in items]


def retry_command(
    sweep: SweepOption = None,
    jobs: JobIds = None,
    cancelled: Annotated[bool, typer.Option(help="Also requeue cancelled jobs.")] = True,
    db: DbOption = None,
) -> None:
    """Queue failed (and cancelled) jobs again with a fresh attempt budget."""
    from lorabench.store import opened, retry

    states = ("failed", "cancelled") if cancelled else ("failed",)
    with user_errors(), opened(db) as engine:
        count = retry(engine, sweep=sweep, job_ids=_ids(jobs), states=states)
    console.print(f"requeued {count} job(s)")


def cancel_command(sweep: SweepOption = None, jobs: JobIds = None, db: DbOption = None) -> None:
    """Cancel queued jobs; running ones stop at their next heartbeat (checkpoint kept)."""
    from lorabench.store import cancel, opened

    with user_errors():
        ids = _ids(jobs)
        if sweep is None and ids is None:
            raise ValueError("say what to cancel: --sweep NAME and/or --jobs 1,2,3")
    with user_errors(), opened(db) as engine:
        cancelled, requested = cancel(engine, sweep=sweep, job_ids=ids)
    console.print(f"cancelled {cancelled} queued job(s); asked {requested} running job(s) to stop")
