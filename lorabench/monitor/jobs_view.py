"""Rendering `lorabench jobs` (a JobList) and `lorabench jobs show` (a JobDetail) with rich."""

from __future__ import annotations

import json
import time

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lorabench.monitor.jobs import JobDetail, JobList
from lorabench.monitor.view import format_duration

STATE_STYLE = {"queued": "", "running": "cyan", "done": "green", "failed": "bold red",
               "cancelled": "dim"}  # fmt: skip


def format_time(seconds: float | None) -> str:
    """Unix seconds as local time, '2025-03-01 14:02:07'; '-' when unset."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # unreachable


def _state(state: str) -> str:
    style = STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def _progress(job: JobDetail) -> str:
    """The suffix " (step 12/50, epoch 1/2)" for a running job that has reported progress."""
    prog = job.progress
    if job.state != "running" or "step" not in prog:
        return ""
    epoch = f", epoch {prog['epoch']}/{prog['epochs']}" if "epoch" in prog else ""
    return f" (step {prog['step']}/{prog.get('total_steps', '?')}{epoch})"


def render_job_list(jobs: JobList) -> RenderableType:
    if not jobs.lines:
        return Text("no jobs match" if jobs.matching == 0 else "no jobs shown")
    table = Table(title="jobs")
    for column in ("id", "sweep", "variant", "task", "lr", "seed", "state", "attempts",
                   "best score", "updated"):  # fmt: skip
        justify = "right" if column in ("id", "lr", "seed", "attempts", "best score") else "left"
        table.add_column(column, justify=justify)
    for job in jobs.lines:
        score = "-" if job.score is None else f"{job.score.shown()} {job.score.metric}"
        table.add_row(
            str(job.id), escape(job.sweep), job.variant, job.task, f"{job.lr:g}", str(job.seed),
            _state(job.state), f"{job.attempts}/{job.max_attempts}", score,
            f"{format_duration(job.updated_age)} ago",
        )  # fmt: skip
    parts: list[RenderableType] = [table]
    if jobs.matching > len(jobs.lines):
        parts.append(Text(f"{len(jobs.lines)} of {jobs.matching} matching jobs shown "
                          "(--limit N, 0 for all)", style="dim"))  # fmt: skip
    return Group(*parts)


def render_job_detail(job: JobDetail) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("job", f"{job.id} in sweep {escape(job.sweep)}"),
        ("state", _state(job.state) + _progress(job)),
        ("attempts", f"{job.attempts} of {job.max_attempts} counted"),
        ("created", format_time(job.created)),
        ("started", format_time(job.started)),
        ("finished", format_time(job.finished)),
        ("updated", f"{format_duration(job.updated_age)} ago"),
        ("hashes", f"config {job.config_hash[:12]}, group {job.group_hash[:12]}"),
    ]
    if job.score is not None:
        s = job.score
        chosen = "on the select split" if s.by == "val" else "on the test split"
        rows.append(("score", f"{s.metric} {s.shown()} at epoch {s.epoch} (chosen {chosen})"))
    if job.error:
        rows.append(("error", f"[red]{escape(job.error.strip())}[/]"))
    for name, value in rows:
        head.add_row(name, value)
    parts: list[RenderableType] = [head, _config(job), _attempts(job), _run_folder(job)]
    if job.epochs:
        parts.append(_epochs(job))
    if job.summary or job.train:
        parts.append(_summary(job))
    return Group(*parts)


def _config(job: JobDetail) -> Table:
    table = Table(title="config", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in job.config.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
        table.add_row(name, escape(shown))
    return table


def _attempts(job: JobDetail) -> RenderableType:
    if not job.attempt_lines:
        return Text("attempts: none yet")
    table = Table(title="attempts")
    for column in ("#", "outcome", "worker", "device", "started", "took", "resumed from", "error"):
        table.add_column(column)
    for a in job.attempt_lines:
        took = "-" if a.ended is None else format_duration(a.ended - a.started)
        resumed = "-" if a.resumed_from_step is None else f"step {a.resumed_from_step}"
        error = (a.error or "").strip().splitlines()[-1:] or ["-"]
        table.add_row(str(a.number), a.outcome, escape(a.worker), a.device,
                      format_time(a.started), took, resumed, escape(error[0][:200]))  # fmt: skip
    return table


def _run_folder(job: JobDetail) -> RenderableType:
    if job.out_dir is None:
        return Text("run folder: none yet (the job has not started)")
    if not job.out_dir_here:
        return Text(f"run folder: {job.out_dir} (not on this machine)")
    if not job.files:
        return Text(f"run folder: {job.out_dir} (empty)")
    table = Table(title=f"run folder {escape(job.out_dir)}")
    for column in ("file", "size", "modified"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for f in job.files:
        table.add_row(escape(f.name), format_size(f.size), format_time(f.modified))
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _epochs(job: JobDetail) -> Table:
    select_names = sorted({n for e in job.epochs for n in e.select})
    test_names = sorted({n for e in job.epochs for n in e.test})
    table = Table(title="metrics by epoch (* reported)")
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    for name in select_names:
        table.add_column(f"select {name}", justify="right")
    for name in test_names:
        table.add_column(f"test {name}", justify="right")
    chosen = job.score.epoch if job.score is not None else None
    for e in job.epochs:
        mark = "*" if e.epoch == chosen else ""
        table.add_row(
            f"{e.epoch}{mark}", "-" if e.step is None else str(e.step),
            *(_number(e.select.get(n)) for n in select_names),
            *(_number(e.test.get(n)) for n in test_names),
        )  # fmt: skip
    return table


def _summary(job: JobDetail) -> Table:
    table = Table(title="summary", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in job.summary.items():
        table.add_row(name, _number(value))
    train = job.train
    if train:
        table.add_row("train loss", f"{_number(train['first_loss'])} -> "
                      f"{_number(train['last_loss'])} (min {_number(train['min_loss'])}, "
                      f"{train['steps']} steps logged)")  # fmt: skip
    return table
