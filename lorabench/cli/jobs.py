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
    ids = [int(item) for item in items]
    for job_id in ids:
        check_job_id(job_id)
    return ids


def check_job_id(job_id: int) -> None:
    """An id no job can have (beyond the database's integer column) is a typo, said as such."""
    from lorabench.config import INT_MAX

    if not 1 <= job_id <= INT_MAX:
        raise ValueError(f"no job has id {job_id}: job ids run from 1 to {INT_MAX}")


def require_names(engine, sweep: str | None, ids: list[int] | None) -> dict[int, str]:  # noqa: ANN001
    """A sweep or job the database does not hold is a typo: exit 2 naming it, not "0 jobs".
    Returns the state of each job named by id."""
    from lorabench.store import require_jobs, require_sweep

    require_sweep(engine, sweep)
    return require_jobs(engine, ids)


def _left_alone(before: dict[int, str], acted_on: tuple[str, ...], rule: str) -> str | None:
    """For jobs named by id: which ones the command left as they were, and why (their state),
    e.g. "left as they are: job 3 done; jobs 4, 5 stopped (retry requeues failed and cancelled
    jobs)". None when it acted on every one."""
    by_state: dict[str, list[int]] = {}
    for job_id, state in sorted(before.items()):
        if state not in acted_on:
            by_state.setdefault(state, []).append(job_id)
    if not by_state:
        return None
    parts = [
        f"job{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} {state}"
        for state, ids in by_state.items()
    ]
    return f"left as they are: {'; '.join(parts)} ({rule})"


def retry_command(
    sweep: SweepOption = None,
    jobs: JobIds = None,
    cancelled: Annotated[bool, typer.Option(help="Also requeue cancelled jobs.")] = True,
    db: DbOption = None,
) -> None:
    """Queue failed (and cancelled) jobs again with a fresh attempt budget."""
    from lorabench.store import opened, retry

    states = ("failed", "cancelled") if cancelled else ("failed",)
    with user_errors():
        ids = _ids(jobs)
    with user_errors(), opened(db) as engine:
        before = require_names(engine, sweep, ids)
        count = retry(engine, sweep=sweep, job_ids=ids, states=states)
    console.print(f"requeued {count} job(s)")
    rule = f"retry requeues {' and '.join(states)} jobs"
    if note := _left_alone(before, states, rule):
        console.print(note, highlight=False, soft_wrap=True)


def cancel_command(sweep: SweepOption = None, jobs: JobIds = None, db: DbOption = None) -> None:
    """Cancel queued jobs; running ones stop at their next heartbeat (checkpoint kept)."""
    from lorabench.store import cancel, opened
    from lorabench.store.queue import CANCELLED_AT_ONCE

    with user_errors():
        ids = _ids(jobs)
        if sweep is None and ids is None:
            raise ValueError("say what to cancel: --sweep NAME and/or --jobs 1,2,3")
    with user_errors(), opened(db) as engine:
        before = require_names(engine, sweep, ids)
        cancelled, requested = cancel(engine, sweep=sweep, job_ids=ids)
    console.print(f"cancelled {cancelled} queued job(s); asked {requested} running job(s) to stop")
    rule = "cancel stops queued, paused and running jobs"
    if note := _left_alone(before, (*CANCELLED_AT_ONCE, "running"), rule):
        console.print(note, highlight=False, soft_wrap=True)
