"""`lorabench report`: tables and figures from the database (opened read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, split_list, user_errors

TABLES = ("lr",)
FIGURES = ("lr-sweep",)
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
    db: DbOption = None,
) -> None:
    """Regenerate a table and/or figure; missing cells say how many jobs are still pending."""
    with user_errors():
        written = write_report(
            db=db, table=table, figure=figure, sweep=sweep, task=task, metric=metric,
            rule=rule, formats=split_list(format_) or [], out=out,
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
    with opened(db, read_only=True) as engine:
        jobs, evals = load_frames(engine, sweep=sweep)
    result = lr_report(
        jobs, evals, out_dir=out, table=table is not None, figure=figure is not None,
        task=task, metric=metric, rule=rule, formats=tuple(formats),
    )  # fmt: skip
    for rich_table in result.tables:
        console.print(rich_table)
    return result.written
