"""`report --format tex`: every registered table as booktabs LaTeX (pandas' Styler), checked cell
by cell against the table it renders: \\textbf on exactly the best cells, $\\approx$ on exactly
the tied ones, $\\pm$ wherever a cell has a std, labels escaped, braces and environments
balanced, and (where pdflatex is installed) a document that compiles."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from report_db import ReportDB
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.report.cells import ReportTable
from lorabench.report.registry import build_tables, table_names
from lorabench.report.render import latex, latex_text
from lorabench.report.select import Scoring

N = 100  # test examples per job
# (variant, lr, seed) -> test accuracy per epoch; right on the first accuracy * N examples, so
# a better job is right wherever a worse one is. At 1e-3 dora is best, pissa one example behind
# (tied), lora far behind (not tied). LoRA's lr 1e-3 with weight_decay 0.01 makes a row whose
# label has an underscore.
RUNS = {
    ("lora", 1e-4, 0): [0.70, 0.74], ("lora", 1e-4, 1): [0.72, 0.74],
    ("lora", 1e-3, 0): [0.76, 0.80], ("lora", 1e-3, 1): [0.78, 0.82],
    ("dora", 1e-4, 0): [0.60, 0.65], ("dora", 1e-4, 1): [0.61, 0.63],
    ("dora", 1e-3, 0): [0.90, 0.86], ("dora", 1e-3, 1): [0.88, 0.92],
    ("pissa", 1e-4, 0): [0.60, 0.65], ("pissa", 1e-4, 1): [0.61, 0.63],
    ("pissa", 1e-3, 0): [0.89, 0.86], ("pissa", 1e-3, 1): [0.88, 0.92],
}  # fmt: skip
TASKS = {  # task -> (its primary metric, extra config)
    "bbc-news": ("accuracy", {}),
    "glue-sst2": ("accuracy", {}),
    "ic-dtd": ("accuracy", {}),
    "gsm8k": ("accuracy_strict", {"rank": 128, "alpha": 256}),  # highrank and nlg
    "gsm8k-mini": ("accuracy_strict", {}),  # overhead and sensitivity
}
SUMMARY = {"adapter_params": 1e6, "step_time_s": 0.5, "train_seconds": 60.0,
           "peak_memory_mb": 900.0}  # fmt: skip


def _right_first(accuracy: float) -> dict:
    return {"correct": np.arange(N) < round(accuracy * N)}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> ReportDB:
    db = ReportDB(tmp_path_factory.mktemp("tex") / "tex.db")
    for task, (metric, extra) in TASKS.items():
        for (variant, lr, seed), test in RUNS.items():
            db.add(
                {"task": task, "variant": variant, "lr": lr, "seed": seed, **extra},
                test={metric: test}, summary=SUMMARY,
                outcomes={e: _right_first(v) for e, v in enumerate(test, start=1)},
            )  # fmt: skip
    db.add({"task": "bbc-news", "variant": "lora", "lr": 1e-3, "weight_decay": 0.01},
           test={"accuracy": [0.5]}, summary=SUMMARY)  # fmt: skip
    db.add({"task": "bbc-news", "variant": "dora", "lr": 1e-2}, state="queued")
    db.close()
    return db


def _tables(db: ReportDB, name: str) -> list[ReportTable]:
    with db.data() as data:
        return build_tables(name, data, Scoring())


def _tabulars(tex: str) -> list[list[list[str]]]:
    """Per table float, its body rows (between \\midrule and \\bottomrule) split into cells."""
    bodies = re.findall(r"\\midrule\n(.*?)\n\\bottomrule", tex, flags=re.DOTALL)
    out = []
    for body in bodies:
        rows = []
        for line in body.splitlines():
            assert line.endswith(" \\\\"), line
            rows.append([c.strip() for c in re.split(r"(?<!\\)&", line.removesuffix(" \\\\"))])
        out.append(rows)
    return out


def _headers(tex: str) -> list[list[str]]:
    found = re.findall(r"\\toprule\n(.*?) \\\\\n\\midrule", tex, flags=re.DOTALL)
    return [[c.strip() for c in re.split(r"(?<!\\)&", header)] for header in found]


def _balanced(tex: str) -> bool:
    depth = 0
    for match in re.finditer(r"\\\\|\\[{}]|[{}]", tex):  # \\ and \{ \} are not groups
        token = match.group()
        if token in ("{", "}"):
            depth += 1 if token == "{" else -1
            if depth < 0:
                return False
    return depth == 0


# Every table the grid sweeps of `db` can fill: `search` reports halving sweeps only (its LaTeX
# is checked in tests/test_halving_report.py).
GRID_TABLES = [name for name in table_names() if name != "search"]


@pytest.mark.parametrize("name", GRID_TABLES)
def test_every_table_as_latex_marks_exactly_what_the_table_marks(db, name):
    tables = _tables(db, name)
    assert tables
    for table in tables:
        tex = latex(table)
        body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
        assert body.isascii(), [c for c in body if not c.isascii()]
        assert _balanced(body)
        for env in ("table", "tabular"):
            assert (
                body.count(f"\\begin{{{env}}}")
                == body.count(f"\\end{{{env}}}")
                == len(table.blocks)
            )
        for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
            assert body.count(rule) == len(table.blocks), rule
        assert "\\usepackage{booktabs}" in tex  # said in the leading comment
        for block, rows, header in zip(table.blocks, _tabulars(tex), _headers(tex), strict=True):
            assert header == [latex_text(h) for h in (block.corner, *block.columns)]
            assert [r[0] for r in rows] == [latex_text(r) for r in block.rows]
            for row, cells in zip(block.rows, rows, strict=True):
                assert len(cells) == 1 + len(block.columns)
                for column, text in zip(block.columns, cells[1:], strict=True):
                    cell = block.cell(row, column)
                    where = (name, block.title, row, column, text)
                    assert text.startswith("\\textbf{") == (cell.mark == "best"), where
                    assert ("$\\approx$" in text) == (cell.mark == "tie"), where
                    has_std = not cell.label and cell.n > 1 and not np.isnan(cell.std)
                    assert ("$\\pm$" in text) == has_std, where
                    if has_std:
                        assert f"{cell.std:.{block.decimals.get(column, 2)}f}" in text


def test_the_lr_table_in_latex_exactly(db):
    (table,) = [t for t in _tables(db, "lr") if t.stem == "lr-table-bbc-news"]
    tex = latex(table)
    # dora is best at 1e-03, pissa one example behind it (tied), lora far behind (not tied);
    # the two weight decays label every row, escaped.
    body = tex[tex.index("\\begin{table}") :]
    assert body == (
        "\\begin{table}[htbp]\n"
        "\\centering\n"
        "\\caption{bbc-news: accuracy (best epoch on the select split) by variant and learning "
        "rate}\n"  # the task once: a table per task names it first
        "\\label{tab:lr-table-bbc-news}\n"
        "\\begin{tabular}{lrrrr}\n"
        "\\toprule\n"
        "variant & 1e-04 & 1e-03 & 1e-02 & best LR \\\\\n"
        "\\midrule\n"
        "dora weight\\_decay=0 & 64.00 $\\pm$ 1.41 [51.29, 76.71] & "
        "\\textbf{91.00 $\\pm$ 1.41 [78.29, 103.71]} & --- (1 queued) & 1e-03 \\\\\n"
        "lora weight\\_decay=0 & \\textbf{74.00 $\\pm$ 0.00 [74.00, 74.00]} & "
        "81.00 $\\pm$ 1.41 [68.29, 93.71] & --- & 1e-03 \\\\\n"
        "lora weight\\_decay=0.01 & --- & 50.00 & --- & 1e-03 \\\\\n"
        "pissa weight\\_decay=0 & 64.00 $\\pm$ 1.41 [51.29, 76.71] & "
        "90.50 $\\pm$ 2.12 [71.44, 109.56] $\\approx$ & --- & 1e-03 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n"
    )
    assert tex.startswith("% Written by `lorabench report --format tex`; needs \\usepackage")
    # The table's notes, as comments: the legend, and what could not be tested.
    assert "% ≈ not tested for 1 cell(s): no per-example outcomes stored" in tex


def test_latex_text_escapes_specials_and_symbols():
    assert latex_text("lora_ga 50% & $5 #1 {x} ~^\\") == (
        "lora\\_ga 50\\% \\& \\$5 \\#1 \\{x\\} \\textasciitilde{}\\textasciicircum{}"
        "\\textbackslash{}"
    )
    assert latex_text("lora r=128 α=256 †") == "lora r=128 $\\alpha$=256 $\\dagger$"
    assert latex_text("— (1 queued)") == "--- (1 queued)"
    assert latex_text("[0.1, 0.2]") == "{}[0.1, 0.2]"  # not \\'s optional argument


def test_cli_writes_tex_beside_md_and_csv(db, tmp_path):
    result = CliRunner().invoke(app, [
        "report", "--db", str(db.path), "--table", "glue", "--format", "md,csv,tex",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "glue-table.csv", "glue-table.md", "glue-table.tex",
    ]  # fmt: skip
    tex = (tmp_path / "glue-table.tex").read_text(encoding="utf-8")
    assert tex.count("\\begin{tabular}") == 2  # one block per learning rate
    bad = CliRunner().invoke(app, ["report", "--db", str(db.path), "--table", "glue",
                                   "--format", "pdf"])  # fmt: skip
    assert bad.exit_code == 2 and "choose from md, csv, tex, png, svg" in bad.output


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_every_table_compiles_with_pdflatex(db, tmp_path):
    inputs = []
    for name in GRID_TABLES:
        for table in _tables(db, name):
            path = tmp_path / f"{table.stem}.tex"
            path.write_text(latex(table), encoding="utf-8")
            inputs.append(f"\\input{{{path.name}}}\\clearpage")
    document = "\n".join([
        "\\documentclass{article}", "\\usepackage{booktabs}", "\\begin{document}", *inputs,
        "\\end{document}",
    ])  # fmt: skip
    (tmp_path / "all.tex").write_text(document, encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
