"""`lorabench status`, `retry`, `cancel`: look at and steer the queue."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.table import Table

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


def status_command(sweep: SweepOption = None, db: DbOption = None) -> None:
    """Jobs by state per sweep, running jobs with their progress, failed jobs with their error."""
    from sqlalchemy import func, select

    from lorabench.store import opened
    from lorabench.store.models import JOB_STATES, Job, Sweep, Worker

    scope = [Sweep.name == sweep] if sweep else []
    with user_errors(), opened(db, read_only=True) as engine, engine.connect() as conn:
        counts = conn.execute(
            select(Sweep.name, Job.state, func.count())
            .join(Job, Job.sweep_id == Sweep.id)
            .where(*scope)
            .group_by(Sweep.name, Job.state)
        ).all()
        running = conn.execute(
            select(Job.id, Job.config, Job.progress, Job.lease_expires_at, Worker.host, Worker.pid)
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
    by_sweep: dict[str, dict[str, int]] = {}
    for name, state, count in counts:
        by_sweep.setdefault(name, {})[state] = count
    if not by_sweep:
        console.print("no jobs planned" + (f" in sweep {sweep!r}" if sweep else ""))
        return
    table = Table(title="jobs by state")
    table.add_column("sweep")
    for state in JOB_STATES:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    for name, states in sorted(by_sweep.items()):
        table.add_row(name, *(str(states.get(s, 0)) for s in JOB_STATES), str(sum(states.values())))
    console.print(table)
    if running:
        now = time.time()
        table = Table(title="running")
        for column in ("job", "variant", "lr", "worker", "progress", "loss", "lease"):
            table.add_column(column)
        for job_id, config, progress, expires, host, pid in running:
            cfg, prog = json.loads(config), json.loads(progress or "{}")
            steps = f"{prog['step']}/{prog['total_steps']}" if "step" in prog else "starting"
            epoch = f" (epoch {prog['epoch']}/{prog['epochs']})" if "epoch" in prog else ""
            loss = f"{prog['loss']:.4f}" if "loss" in prog else "-"
            left = (expires or now) - now
            lease = f"{left:.0f}s left" if left > 0 else "[red]expired (worker dead?)[/]"
            table.add_row(str(job_id), cfg["variant"], f"{cfg['lr']:g}", f"{host}:{pid}",
                          steps + epoch, loss, lease)  # fmt: skip
        console.print(table)
    if failed:
        table = Table(title="failed")
        for column in ("job", "variant", "lr", "attempts", "error"):
            table.add_column(column)
        for job_id, config, attempts, error in failed:
            cfg = json.loads(config)
            last_line = (error or "").strip().splitlines()[-1:] or [""]
            table.add_row(str(job_id), cfg["variant"], f"{cfg['lr']:g}", str(attempts),
                          last_line[0][:200])  # fmt: skip
        console.print(table)


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
