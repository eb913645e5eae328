"""`lorabench jobs` (the jobs, filtered) and `lorabench jobs show ID` (one job in full). The
database is opened read-only; `cancel` and `retry` (jobs.py) change jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from lorabench.cli.common import DbOption, print_whole, split_list, user_errors

jobs_app = typer.Typer(
    help="List jobs (filters: --sweep, --state, --variant, --task, --limit); `jobs show ID` "
    "shows one job in full.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@jobs_app.callback()
def jobs_list_command(
    context: typer.Context,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep.")] = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="Only these states, comma-separated: queued, running, done, failed, cancelled."
        ),  # fmt: skip
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="Only these variants, comma-separated.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only these tasks, comma-separated.")] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show the first N matching jobs (0: all).")
    ] = 50,
    db: DbOption = None,
) -> None:
    """List jobs in id order: sweep, variant, task, lr, seed, state, attempts, best score (the
    report's: test score at the epoch chosen on the select split), last update."""
    if context.invoked_subcommand is not None:
        context.obj = {"db": db}  # `jobs --db X show 3` means that database too
        return
    from lorabench.monitor.jobs import list_jobs
    from lorabench.monitor.jobs_view import render_job_list
    from lorabench.store import opened

    with user_errors(), opened(db, read_only=True) as engine:
        jobs = list_jobs(
            engine, sweep=sweep, states=split_list(state) or (),
            variants=split_list(variant) or (), tasks=split_list(task) or (), limit=limit,
        )  # fmt: skip
    print_whole(render_job_list(jobs))


@jobs_app.command("show")
def jobs_show_command(
    context: typer.Context,
    job_id: Annotated[int, typer.Argument(help="Job id (see `lorabench jobs`).")],
    db: DbOption = None,
) -> None:
    """One job in full: config, attempts with their workers, errors and times, the run folder
    and its checkpoint files (when on this machine), metrics by epoch and the summary."""
    from lorabench.cli.jobs import check_job_id
    from lorabench.monitor.jobs import job_detail
    from lorabench.monitor.jobs_view import render_job_detail
    from lorabench.store import opened

    db = db or (context.obj or {}).get("db")
    with user_errors():
        check_job_id(job_id)
        with opened(db, read_only=True) as engine:
            detail = job_detail(engine, job_id)
    print_whole(render_job_detail(detail))
