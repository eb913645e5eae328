"""`lorabench report`: tables and figures from the database (opened read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import (
    DbOption,
    SweepOption,
    TaskOption,
    WhereOption,
    console,
    print_whole,
    split_list,
    user_errors,
)

COMPARES = ("paper",)
FORMATS = ("md", "csv", "tex", "png", "svg")


def report_command(
    table: Annotated[
        str | None,
        typer.Option(
            help="Table to write, by name (lr, glue, ...); an unknown name lists every "
            "registered table."
        ),  # fmt: skip
    ] = None,
    figure: Annotated[
        str | None,
        typer.Option(
            help="Figure to draw (lr-sweep, sensitivity, overhead); an unknown name "
            "lists every registered figure."
        ),  # fmt: skip
    ] = None,
    sweep: SweepOption = None,
    task: TaskOption = None,
    where: WhereOption = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric (default: each task's primary metric).")
    ] = None,
    rule: Annotated[
        str, typer.Option(help="Per-job epoch: best (by the --select rule) or last.")
    ] = "best",
    select: Annotated[
        str | None,
        typer.Option(
            help="Choose epochs and learning rates on the held-out select split (val) "
            "or on the reported split (test, the paper's rule). Default: val; test "
            "with --compare paper."
        ),  # fmt: skip
    ] = None,
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
            db=db, table=table, figure=figure, sweep=sweep, task=task, where=where or [],
            metric=metric, rule=rule, select=select, formats=split_list(format_) or [], out=out,
            compare=compare,
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
    where: list[str] | None = None,
    metric: str | None = None,
    rule: str = "best",
    select: str | None = None,
    formats: list[str] | None = None,
    out: Path = Path("reports"),
    compare: str | None = None,
) -> list[Path]:
    from lorabench.report.configs import narrow
    from lorabench.report.load import load_data
    from lorabench.report.plot import save_figure
    from lorabench.report.registry import (
        build_tables,
        figure_names,
        get_figure,
        get_table,
        table_names,
    )
    from lorabench.report.render import rich_tables, write_tables
    from lorabench.report.select import Scoring
    from lorabench.store import opened, require_sweep

    formats = formats or ["md", "csv", "png"]
    if table is None and figure is None:
        raise ValueError(f"ask for --table ({', '.join(table_names())}) and/or --figure "
                         f"({', '.join(figure_names())})")  # fmt: skip
    if table is not None:
        get_table(table)  # an unknown name is refused before the database is opened
    draw = get_figure(figure) if figure is not None else None
    if unknown := [f for f in formats if f not in FORMATS]:
        raise ValueError(f"--format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    if compare is not None and compare not in COMPARES:
        raise ValueError(f"--compare {compare!r}: choose {', '.join(COMPARES)}")
    # The paper chose epochs and learning rates on the split it reports: compare like with like.
    scoring = Scoring(metric, rule, select or ("test" if compare else "val"))
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the report needs a folder")
    written: list[Path] = []
    with opened(db, read_only=True) as engine:
        require_sweep(engine, sweep)  # else a misspelt sweep reads as "no jobs in the database"
        data = narrow(load_data(engine, sweep=sweep), task=task, where=where or [])
        # Built while the engine is open: per-example outcomes are read on demand.
        if table is not None:
            for report in build_tables(table, data, scoring, compare=compare is not None):
                for rich in rich_tables(report):
                    print_whole(rich)
                for note in report.notes:
                    console.print(note, highlight=False, markup=False)
                tables = [f for f in formats if f in ("md", "csv", "tex")]
                written += write_tables(report, out, tables)
        if draw is not None:
            fig = draw(data, scoring)
            images = tuple(f for f in formats if f in ("png", "svg")) or ("png",)
            written += save_figure(fig, out, figure, formats=images)
    return written
