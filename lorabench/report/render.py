"""Render an `LrGrid` as Markdown + CSV files or as a rich table for the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from lorabench.report.aggregate import LrGrid, display_precision, format_cell, format_lr

BEST_LR_HEADER = "best LR"
CSV_COLUMNS = ["variant", "lr", "mean", "std", "n", "pending"]
NOTE = (
    "Mean ± sample std (ddof=1) over seeds; no ± with a single seed; "
    "— = no finished run (unfinished jobs in parentheses). Bold: best per learning rate."
)


@dataclass(frozen=True)
class _Cell:
    text: str
    best: bool = False
    missing: bool = False


def _best_mask(grid: LrGrid, percent: bool, higher_is_better: bool) -> pd.DataFrame:
    """Cells whose displayed value equals their column's best displayed value."""
    scale, decimals = display_precision(percent)
    shown = (grid.mean * scale).round(decimals)
    best = shown.max() if higher_is_better else shown.min()
    return shown.eq(best, axis="columns") & shown.notna()


def _best_lr(row: pd.Series, higher_is_better: bool) -> str:
    row = row.dropna()
    if row.empty:
        return "—"
    return format_lr(float(row.idxmax() if higher_is_better else row.idxmin()))


def _rows(grid: LrGrid, percent: bool, higher_is_better: bool) -> tuple[list[str], list[list]]:
    header = ["variant", *(format_lr(lr) for lr in grid.lrs), BEST_LR_HEADER]
    mask = _best_mask(grid, percent, higher_is_better)
    rows = []
    for variant in grid.variants:
        cells = [_Cell(str(variant))]
        for lr in grid.mean.columns:
            n = int(grid.n.at[variant, lr])
            text = format_cell(
                grid.mean.at[variant, lr],
                grid.std.at[variant, lr],
                n,
                grid.pending.at[variant, lr],
                percent=percent,
            )
            cells.append(_Cell(text, best=bool(mask.at[variant, lr]), missing=n == 0))
        cells.append(_Cell(_best_lr(grid.mean.loc[variant], higher_is_better)))
        rows.append(cells)
    return header, rows


def markdown_table(
    grid: LrGrid, *, title: str, percent: bool, higher_is_better: bool = True
) -> str:
    """The Markdown text written by `write_table`."""
    header, rows = _rows(grid, percent, higher_is_better)

    def md(cell: _Cell) -> str:
        text = cell.text.replace("|", "\\|")
        return f"**{text}**" if cell.best else text

    lines = [f"# {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":--", *["--:"] * (len(header) - 1)]) + "|")
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    lines += ["", NOTE, ""]
    return "\n".join(lines)


def long_form(grid: LrGrid) -> pd.DataFrame:
    """One row per (variant, lr) with raw (unscaled) mean/std, n and the pending summary."""
    records = [
        {
            "variant": variant,
            "lr": float(lr),
            "mean": float(grid.mean.at[variant, lr]),
            "std": float(grid.std.at[variant, lr]),
            "n": int(grid.n.at[variant, lr]),
            "pending": str(grid.pending.at[variant, lr]),
        }
        for variant in grid.variants
        for lr in grid.mean.columns
    ]
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


def write_table(
    grid: LrGrid,
    out_dir: Path,
    name: str,
    *,
    title: str,
    percent: bool,
    higher_is_better: bool = True,
) -> list[Path]:
    """Write ``name.md`` and ``name.csv`` into ``out_dir`` (created); return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    text = markdown_table(grid, title=title, percent=percent, higher_is_better=higher_is_better)
    md_path.write_text(text, encoding="utf-8")
    long_form(grid).to_csv(csv_path, index=False)
    return [md_path, csv_path]


def rich_table(grid: LrGrid, *, title: str, percent: bool, higher_is_better: bool = True) -> Table:
    """Same content as the Markdown table, for printing with a rich Console."""
    header, rows = _rows(grid, percent, higher_is_better)
    table = Table(title=title, caption=NOTE, caption_justify="left")
    table.add_column(header[0], justify="left", no_wrap=True)
    for label in header[1:]:
        table.add_column(label, justify="right")
    for row in rows:
        styled = [Text(c.text, style="bold" if c.best else "dim" if c.missing else "") for c in row]
        table.add_row(*styled)
    return table
