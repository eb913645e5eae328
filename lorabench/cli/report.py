"""`lorabench report`: tables and figures from the database (opened read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, split_list, user_errors

TABLES = ("lr", "nlg", "glue", "ic", "highrank", "overhead", "sensitivity")
COMPARES = ("paper",)
FIGURES = ("lr-sweep", "sensitivity", "overhead")
FORMATS = ("md", "csv", "png", "svg")


def report_command(
    table: Annotated[str | None, typer.Option(help=f"Table to write: {', '.join(TABLES)}.")] = None,
    figure: Annotated[
        str | None, typer.Option(help=f"Figure to draw: {', '.join(FIGURES)}.")
    ] = None,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric (default: each task's primary metric).")
    ] = None,
    rule: Annotated[
        str, typer.Option(help="Per-job score: best epoch (the paper's rule) or last.")
    ] = "best",
    format_: Annotated[
        str, typer.Option("--format", help=f"Comma-separated: {', '.join(FORMATS)}.")
    ] = "md,csv,png",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("reports"),
    compare: Annotated[
        str | None,
        typer.Option(help="Show the paper's value and ours − paper beside ours: paper."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Regenerate a table and/or figure; missing cells say how many jobs are still pending."""
    with user_errors():
        written = write_report(
            db=db, table=table, figure=figure, sweep=sweep, task=task, metric=metric,
            rule=rule, formats=split_list(format_) or [], out=out, compare=compare,
        )  # fmt: skip
    for path in written:
        console.print(f"wrote {path}")


def write_report(
    *,
    db: str | None,
    table: str | None,
    figure: str | None,
    sweep: str | None = None,
    task: str | None = None,
    metric: str | None = None,
    rule: str = "best",
    formats: list[str] | None = None,
    out: Path = Path("reports"),
    compare: str | None = None,
) -> list[Path]:
    from lorabench.report.load import load_frames
    from lorabench.report.lr import lr_report
    from lorabench.store import opened

    formats = formats or ["md", "csv", "png"]
    if table is None and figure is None:
        raise ValueError(
            f"ask for --table ({', '.join(TABLES)}) and/or --figure ({', '.join(FIGURES)})"
        )
    if table is not None and table not in TABLES:
        raise ValueError(f"--table {table!r}: available tables: {', '.join(TABLES)}")
    if figure is not None and figure not in FIGURES:
        raise ValueError(f"--figure {figure!r}: available figures: {', '.join(FIGURES)}")
    if unknown := [f for f in formats if f not in FORMATS]:
        raise ValueError(f"--format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    if rule not in ("best", "last"):
        raise ValueError(f"--rule {rule!r}: choose best or last")
    if compare is not None and compare not in COMPARES:
        raise ValueError(f"--compare {compare!r}: choose {', '.join(COMPARES)}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the report needs a folder")
    written: list[Path] = []
    if table is not None and table != "lr":
        written += _paper_layout_table(
            db, table, sweep=sweep, task=task, metric=metric, rule=rule, formats=formats,
            out=out, compare=compare is not None,
        )  # fmt: skip
    if figure in ("sensitivity", "overhead"):
        written += _paper_figure(db, figure, sweep=sweep, task=task, metric=metric, rule=rule,
                                 formats=formats, out=out)  # fmt: skip
    if table == "lr" or figure == "lr-sweep":
        if table == "lr" and compare is not None:
            from lorabench.report.tables import NO_PAPER_NUMBERS

            console.print(f"--compare paper: {NO_PAPER_NUMBERS['lr']}; nothing to compare.")
        with opened(db, read_only=True) as engine:
            jobs, evals = load_frames(engine, sweep=sweep)
        result = lr_report(
            jobs, evals, out_dir=out, table=table == "lr", figure=figure == "lr-sweep",
            task=task, metric=metric, rule=rule, formats=tuple(formats),
        )  # fmt: skip
        for rich_table in result.tables:
            console.print(rich_table)
        written += result.written
    return written


def _paper_figure(
    db: str | None,
    figure: str,
    *,
    sweep: str | None,
    task: str | None,
    metric: str | None,
    rule: str,
    formats: list[str],
    out: Path,
) -> list[Path]:
    """Fig. 6 (sensitivity) or Fig. 8 (overhead) from the database, as PNG and/or SVG."""
    from lorabench.report.figures import (
        load_figure_frames,
        overhead_figure,
        save_figure,
        sensitivity_figure,
    )
    from lorabench.report.lr import NothingToReport
    from lorabench.store import opened

    with opened(db, read_only=True) as engine:
        jobs, evals, summary = load_figure_frames(engine, sweep=sweep)
    if task is not None:
        jobs = jobs[jobs["task"] == task]
    if jobs.empty:
        raise NothingToReport("no jobs in the database to draw; plan and run a sweep first")
    if figure == "sensitivity":
        fig = sensitivity_figure(jobs, evals, task=task, metric=metric, rule=rule)
    else:
        fig = overhead_figure(jobs, summary[summary["job_id"].isin(jobs["job_id"])])
    images = tuple(f for f in formats if f in ("png", "svg")) or ("png",)
    return save_figure(fig, out, figure, formats=images)


def _paper_layout_table(
    db: str | None, name: str, *, sweep: str | None, task: str | None, metric: str | None,
    rule: str, formats: list[str], out: Path, compare: bool,
) -> list[Path]:  # fmt: skip
    from lorabench.report.load import load_data
    from lorabench.report.tables import build_table, rich_tables, write_tables
    from lorabench.store import opened

    with opened(db, read_only=True) as engine:
        data = load_data(engine, sweep=sweep)
    if task is not None:
        data = data.only(data.jobs["task"] == task)
    report = build_table(name, data, metric=metric, rule=rule, compare=compare)
    for rich_table in rich_tables(report):
        console.print(rich_table)
    for note in report.notes:
        console.print(note, highlight=False)
    return write_tables(report, out, [f for f in formats if f in ("md", "csv")])
