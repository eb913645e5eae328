"""Rendering a StatusSnapshot as rich renderables: the same view for `status` and `--watch`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lorabench.monitor.brackets import BracketProgress, RungCounts
from lorabench.monitor.snapshot import RunningJob, StatusSnapshot, SweepProgress
from lorabench.store.models import JOB_STATES

STATE_STYLE = {"alive": "green", "stopped": "dim", "dead": "bold red"}
# Every worker that ever ran stays in the table; past this many, older stopped ones are counted.
STOPPED_SHOWN = 5
# Halving brackets listed, those still searching first; the rest are counted.
BRACKETS_SHOWN = 10


def render_snapshot(snapshot: StatusSnapshot) -> RenderableType:
    if not snapshot.sweeps:
        where = f" in sweep {snapshot.sweep_filter!r}" if snapshot.sweep_filter else ""
        return Text(f"no jobs planned{where}")
    parts: list[RenderableType] = [_sweeps(snapshot.sweeps)]
    if snapshot.brackets:
        parts.append(_brackets(snapshot.brackets))
    if snapshot.workers:
        parts.append(_workers(snapshot))
    if snapshot.running:
        parts.append(_running(snapshot.running))
    if snapshot.failed:
        parts.append(_failed(snapshot))
    return Group(*parts)


def format_duration(seconds: float) -> str:
    """'45s', '12m', '3h 05m', '2d 04h': coarse on purpose, an ETA is a guess."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _sweeps(sweeps: list[SweepProgress]) -> Group:
    """Two narrow tables rather than one wide one: both fit an 80-column terminal."""
    counts = Table(title="jobs by state")
    counts.add_column("sweep", no_wrap=True)
    # paused/stopped only where a sweep searches by halving (its counts hold them).
    states = [s for s in JOB_STATES if any(s in sweep.counts for sweep in sweeps)]
    for state in states:
        counts.add_column(state, justify="right")
    counts.add_column("total", justify="right")
    progress = Table(title="progress")
    progress.add_column("sweep", no_wrap=True)
    progress.add_column("finished")
    progress.add_column("jobs/hour", justify="right", no_wrap=True)
    progress.add_column("ETA", justify="right", no_wrap=True)
    for sweep in sweeps:
        shown = (str(sweep.counts[s]) if s in sweep.counts else "-" for s in states)
        counts.add_row(sweep.name, *shown, str(sweep.total))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(sweep.total, 1), completed=sweep.finished, width=16),
            f"{sweep.finished}/{sweep.total}",
        )
        rate = (
            "-"
            if sweep.throughput_per_hour is None
            else f"{sweep.throughput_per_hour:.1f} ({sweep.throughput_basis})"
        )
        if sweep.eta_seconds is None:
            eta = "-"
        elif sweep.remaining == 0:
            eta = "finished"
        else:
            eta = format_duration(sweep.eta_seconds)
        progress.add_row(sweep.name, bar, rate, eta)
    return Group(counts, progress)


def _brackets(brackets: list[BracketProgress]) -> Table:
    """A line per bracket, a column per rung: how many arms reported it, and what became of
    them (`rung_text`)."""
    ordered = sorted(brackets, key=lambda b: (not b.searching, b.id))
    shown, hidden = ordered[:BRACKETS_SHOWN], ordered[BRACKETS_SHOWN:]
    table = Table(title="halving brackets (arms = learning rates)")
    for column in ("bracket", "sweep", "arms"):
        table.add_column(column, no_wrap=True)
    for k in range(max(len(b.rungs) for b in shown)):
        table.add_column(f"rung {k}")
    for b in shown:
        rungs = [rung_text(r) for r in b.rungs]
        table.add_row(f"{b.id} {b.label}", b.sweep, str(b.arms), *rungs)
    if hidden:
        searching = sum(b.searching for b in hidden)
        table.add_row(f"[dim]+{len(hidden)} more ({searching} searching)[/]")
    return table


def rung_text(rung: RungCounts) -> str:
    """'3 in: 1 on, 2 stopped; 1 training': arms that reported the rung, what became of them,
    then those still training toward it or lost there (every seed failed or cancelled)."""
    outcomes = [f"{n} {what}" for what, n in (("on", rung.on), ("done", rung.done),
                ("stopped", rung.stopped), ("waiting", rung.waiting)) if n]  # fmt: skip
    parts = [f"{rung.reported} in: {', '.join(outcomes)}"] if outcomes else []
    if rung.training:
        parts.append(f"{rung.training} training")
    if rung.gone:
        parts.append(f"{rung.gone} failed/cancelled")
    return "; ".join(parts)


def _workers(snapshot: StatusSnapshot) -> Table:
    table = Table(title="workers")
    for column in ("worker", "device", "job", "heartbeat", "state"):
        table.add_column(column)
    stopped = [w for w in snapshot.workers if w.state == "stopped"]
    hidden = {w.id for w in stopped[:-STOPPED_SHOWN]} if len(stopped) > STOPPED_SHOWN else set()
    for w in snapshot.workers:
        if w.id in hidden:
            continue
        style = STATE_STYLE[w.state]
        table.add_row(
            f"{w.host}:{w.pid}",
            w.device,
            "-" if w.job_id is None else str(w.job_id),
            f"{format_duration(w.heartbeat_age)} ago",
            f"[{style}]{w.state}[/]",
        )
    if hidden:
        table.add_row("", "", "", "", f"[dim]+{len(hidden)} older stopped[/]")
    return table


def _running(running: list[RunningJob]) -> Table:
    table = Table(title="running")
    for column in ("job", "sweep", "variant", "lr", "worker", "progress", "loss", "lease"):
        table.add_column(column)
    for job in running:
        prog = job.progress
        steps = f"{prog['step']}/{prog['total_steps']}" if "step" in prog else "starting"
        epoch = f" (epoch {prog['epoch']}/{prog['epochs']})" if "epoch" in prog else ""
        loss = f"{prog['loss']:.4f}" if "loss" in prog else "-"
        if job.lease_left is None or job.lease_left > 0:
            lease = "-" if job.lease_left is None else f"{job.lease_left:.0f}s left"
        else:
            lease = "[red]expired (worker dead?)[/]"
        table.add_row(str(job.id), job.sweep, job.variant, f"{job.lr:g}", job.worker or "-",
                      steps + epoch, loss, lease)  # fmt: skip
    return table


def _failed(snapshot: StatusSnapshot) -> Table:
    table = Table(title="failed")
    for column in ("job", "variant", "lr", "attempts", "error"):
        table.add_column(column)
    for job in snapshot.failed:
        table.add_row(str(job.id), job.variant, f"{job.lr:g}", str(job.attempts), job.error)
    return table
