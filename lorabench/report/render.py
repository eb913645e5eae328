"""Write a `ReportTable` as Markdown and CSV, or as rich tables for the terminal.

Markdown bolds the best cell of a column; ≈ (in the cell's text) marks the tied ones. The CSV
has one line per cell in display units, with the interval, the mark and the p-value.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from lorabench.report.cells import Block, ReportTable

CSV_COLUMNS = ["block", "row", "column", "mean", "std", "n", "ci_low", "ci_high", "pending",
               "paper", "diff", "label", "mark", "p_value"]  # fmt: skip
COMPARE_NOTE = "Beside each value: the paper's value and ours − paper, in the paper's units."


def _texts(block: Block, compare: bool) -> list[list[tuple[str, str]]]:
    """Per row: (text, mark) of the row label and each cell."""
    out = []
    for row in block.rows:
        line = [(row, "")]
        for column in block.columns:
            cell = block.cell(row, column)
            shown = compare and (block.compared is None or column in block.compared)
            line.append((cell.text(block.decimals.get(column, 2), shown), cell.mark))
        out.append(line)
    return out


def markdown(table: ReportTable) -> str:
    lines = [f"# {table.title}", ""]
    for block in table.blocks:
        lines += [f"## {block.title}", "", "| " + " | ".join([block.corner, *block.columns]) + " |"]
        lines.append("|" + "|".join([":--", *["--:"] * len(block.columns)]) + "|")
        for row in _texts(block, table.compare):
            texts = []
            for text, mark in row:
                text = text.replace("|", "\\|")
                texts.append(f"**{text}**" if mark == "best" else text)
            lines.append("| " + " | ".join(texts) + " |")
        lines.append("")
    if table.compare:
        lines.append(COMPARE_NOTE)
    lines += [*table.notes, ""]
    return "\n".join(lines)


def long_form(table: ReportTable) -> pd.DataFrame:
    """One line per cell, in display units (x100 for percent metrics), paper/diff if compared."""
    records = []
    for block in table.blocks:
        for row in block.rows:
            for column in block.columns:
                c = block.cell(row, column)
                records.append({
                    "block": block.title, "row": row, "column": column, "mean": c.mean,
                    "std": c.std, "n": c.n, "ci_low": c.low, "ci_high": c.high,
                    "pending": c.pending, "paper": c.paper, "diff": c.diff, "label": c.label,
                    "mark": c.mark, "p_value": c.p_value,
                })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


def rich_tables(table: ReportTable) -> list[Table]:
    out = []
    for block in table.blocks:
        rich = Table(title=Text(f"{table.title}: {block.title}"))  # Text: no markup in titles
        rich.add_column(block.corner, no_wrap=True)
        for column in block.columns:
            rich.add_column(column, justify="right")
        for row in _texts(block, table.compare):
            styled = []
            for text, mark in row:
                missing = text.startswith("—")
                styled.append(Text(text, style="bold" if mark == "best" else "dim" if missing
                                   else ""))  # fmt: skip
            rich.add_row(*styled)
        out.append(rich)
    return out


def write_tables(
    table: ReportTable, out_dir: Path, formats: list[str] | tuple[str, ...]
) -> list[Path]:
    """Write ``<stem>.md`` / ``.csv`` (as ``formats`` asks) into ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "md" in formats:
        path = out_dir / f"{table.stem}.md"
        path.write_text(markdown(table), encoding="utf-8")
        written.append(path)
    if "csv" in formats:
        path = out_dir / f"{table.stem}.csv"
        long_form(table).to_csv(path, index=False)
        written.append(path)
    return written
