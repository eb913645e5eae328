r"""Write a `ReportTable` as Markdown, CSV or LaTeX, or as rich tables for the terminal.

Markdown bolds the best cell of a column; ≈ (in the cell's text) marks the tied ones. The CSV
has one line per cell in display units, with the interval, the mark (or "(stopped, rung k)"
for a learning rate successive halving stopped) and the p-value. LaTeX is one booktabs table
per block, written by pandas' Styler: the best cell in \textbf, the tied ones marked
$\approx$, ± as $\pm$, every label escaped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from lorabench.report.cells import Block, ReportTable, stopped_mark

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
                    "mark": c.mark if c.stopped is None else stopped_mark(c.stopped),
                    "p_value": c.p_value,
                })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


# LaTeX's special characters, and the symbols cells and labels use, each as LaTeX; one pass
# over the text, so nothing is escaped twice.
LATEX_CHARS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "≈": r"$\approx$", "—": "---", "–": "--", "−": "$-$", "α": r"$\alpha$",
    "†": r"$\dagger$", "≤": r"$\leq$", "≥": r"$\geq$", "×": r"$\times$", "Δ": r"$\Delta$",
}  # fmt: skip
# The legend (bold, ≈) is among the table's own notes, which follow as comments.
LATEX_PREAMBLE = ["% Written by `lorabench report --format tex`; needs \\usepackage{booktabs}."]


def latex_text(text: str) -> str:
    """``text`` as LaTeX: specials escaped (lora_ga -> lora\\_ga, 50% -> 50\\%), symbols as
    math (± -> $\\pm$); a leading "[" is guarded, since after a row's \\\\ it would be read
    as the optional argument of \\\\."""
    out = "".join(LATEX_CHARS.get(c, c) for c in text)
    return "{}" + out if out.startswith("[") else out


def latex(table: ReportTable) -> str:
    """The table as LaTeX: one booktabs `table` float per block (pandas' Styler), captioned
    "title: block title", labelled tab:<file stem>[-<block>]; notes as comments."""
    lines = list(LATEX_PREAMBLE)
    if table.compare:
        lines.append(f"% {COMPARE_NOTE}")
    lines += [f"% {' '.join(note.split())}" for note in table.notes]
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{table.stem}")
    for number, block in enumerate(table.blocks, start=1):
        name = label if len(table.blocks) == 1 else f"{label}-{number}"
        lines += ["", _latex_block(block, table, name)]
    return "\n".join(lines) + "\n"


def _latex_block(block: Block, table: ReportTable, label: str) -> str:
    texts = _texts(block, table.compare)
    frame = pd.DataFrame([[latex_text(text) for text, _ in row] for row in texts],
                         columns=range(len(block.columns) + 1))  # fmt: skip
    bold = pd.DataFrame([["textbf: --rwrap;" if mark == "best" else "" for _, mark in row]
                         for row in texts], columns=frame.columns)  # fmt: skip
    styler = frame.style.hide(axis="index").apply(lambda _: bold, axis=None)
    header = [latex_text(text) for text in (block.corner, *block.columns)]
    styler = styler.relabel_index(header, axis="columns")
    return styler.to_latex(
        column_format="l" + "r" * len(block.columns), hrules=True, position="htbp",
        position_float="centering", label=label,
        caption=latex_text(_caption(table, block)),
    ).rstrip("\n")  # fmt: skip


def _caption(table: ReportTable, block: Block) -> str:
    """The table's title, then the block's unless the title already begins with it (a table
    per task names its task first, and `bbc-news: ...: bbc-news` says it twice)."""
    if table.title.startswith(f"{block.title}:"):
        return table.title
    return f"{table.title}: {block.title}"


def rich_tables(table: ReportTable) -> list[Table]:
    out = []
    for block in table.blocks:
        rich = Table(title=Text(_caption(table, block)))  # Text: no markup in titles
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
    """Write ``<stem>.md`` / ``.csv`` / ``.tex`` (as ``formats`` asks) into ``out_dir``
    (created)."""
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
    if "tex" in formats:
        path = out_dir / f"{table.stem}.tex"
        path.write_text(latex(table), encoding="utf-8")
        written.append(path)
    return written
