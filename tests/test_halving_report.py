"""Reports of a successive-halving sweep: stopped learning rates in the lr table (marked, never
chosen) and the lr-sweep figure, and `report --table search`, on brackets written by hand
through the store's API; every number below is worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from halving_db import HalvingDB, finished_bracket
from matplotlib.colors import to_rgba
from test_report_latex import _balanced, _headers, _tabulars
from typer.testing import CliRunner

from lorabench.api import plan
from lorabench.cli import app
from lorabench.report.cells import Cell
from lorabench.report.figures import STOPPED_LABEL, lr_sweep
from lorabench.report.load import load_data
from lorabench.report.registry import build_tables
from lorabench.report.render import latex, latex_text, long_form, markdown
from lorabench.report.select import Scoring
from lorabench.report.stopped import STOPPED_NOTE
from lorabench.store import open_engine

SCORING = Scoring()  # the val rule: epochs and learning rates chosen on the select split
LRS = ["1e-03", "1e-02", "1e-01", "1e+00"]


def tables(path: str, name: str):  # noqa: ANN201
    engine = open_engine(path, read_only=True)
    try:
        return build_tables(name, load_data(engine), SCORING)
    finally:
        engine.dispose()


def texts(block, row: str, columns) -> list[str]:  # noqa: ANN001
    return [block.cell(row, c).text(block.decimals.get(c, 2), False) for c in columns]


@pytest.fixture
def finished(tmp_path: Path) -> str:
    db = finished_bracket(tmp_path / "h.db")
    db.close()
    return db.path


# --- the lr table --------------------------------------------------------------------------------

# Two seeds: t(0.975, 1) = 12.7062. 1e-3 stopped at rung 0 with test 0.4 and 0.6: mean 0.5,
# std 0.1414, interval 0.5 ± 12.7062 x 0.1 = [-0.7706, 1.7706]; 1e-1 likewise at 0.3.
# 1e-2 done: seed 0 at its best select epoch 2 (test 0.75), seed 1 at epoch 1 (test 0.85): mean
# 0.8, std 0.0707, interval 0.8 ± 12.7062 x 0.05 = [0.1647, 1.4353]. 1.0: both seeds failed.
STOPPED_1E3 = "0.5000 ± 0.1414 [-0.7706, 1.7706] (stopped, rung 0)"
STOPPED_1E1 = "0.3000 ± 0.1414 [-0.9706, 1.5706] (stopped, rung 0)"
DONE_1E2 = "0.8000 ± 0.0707 [0.1647, 1.4353]"


def test_a_stopped_learning_rate_shows_its_last_rung_marked_and_never_wins(finished: str):
    (table,) = tables(finished, "lr")
    (block,) = table.blocks
    assert block.rows == ["lora"]
    assert texts(block, "lora", [*LRS, "best LR"]) == [STOPPED_1E3, DONE_1E2, STOPPED_1E1,
                                                      "— (2 failed)", "1e-02"]  # fmt: skip
    stopped = block.cell("lora", "1e-03")
    assert (stopped.stopped, stopped.n, stopped.mark, stopped.scored) == (0, 2, "", False)
    assert stopped.mean == pytest.approx(0.5) and stopped.std == pytest.approx(0.02**0.5)
    assert block.cell("lora", "1e-02").mark == "best"  # the only final score of its column
    assert STOPPED_NOTE in table.notes
    assert table.notes.count(STOPPED_NOTE) == 1


def test_every_format_carries_the_stopped_mark(finished: str):
    (table,) = tables(finished, "lr")
    row = next(line for line in markdown(table).splitlines() if line.startswith("| lora"))
    assert row == (f"| lora | {STOPPED_1E3} | **{DONE_1E2}** | {STOPPED_1E1} | — (2 failed) "
                   "| 1e-02 |")  # fmt: skip
    csv = long_form(table).set_index("column")
    assert csv.at["1e-03", "mark"] == "(stopped, rung 0)"
    assert csv.at["1e-03", "mean"] == pytest.approx(0.5) and csv.at["1e-03", "n"] == 2
    assert csv.at["1e-02", "mark"] == "best"
    assert csv.at["1e+00", "pending"] == "2 failed"
    tex = latex(table)
    assert r"0.5000 $\pm$ 0.1414 [-0.7706, 1.7706] (stopped, rung 0)" in tex
    assert r"\textbf{0.8000 $\pm$ 0.0707 [0.1647, 1.4353]}" in tex
    assert "stopped, rung 0) ---" not in tex  # nothing of the mark is mistaken for a symbol


def test_a_stopped_cell_is_never_bold_nor_compared_with_the_paper():
    cell = Cell(0.5, n=1, stopped=2, paper=0.4)
    assert not cell.scored
    assert cell.text(4, compare=True) == "0.5000 (stopped, rung 2) (paper 0.4000)"


def test_a_sweep_still_running_shows_paused_and_queued_jobs_as_pending(tmp_path: Path):
    db = HalvingDB(tmp_path / "h.db", [1e-3, 1e-2, 1e-1, 1.0])
    assert db.fail(1.0) == "failed"
    assert [db.rung(1e-3, 0, 0.5, 0.45), db.rung(1e-2, 0, 0.9, 0.8)] == ["paused", "paused"]
    # Two of four arms in (floor(2/3) = 0 go on) and 1e-1 still queued: nobody decided yet.
    (table,) = tables(db.path, "lr")
    assert texts(table.blocks[0], "lora", [*LRS, "best LR"]) == [
        "— (1 paused)", "— (1 paused)", "— (1 queued)", "— (1 failed)", "—"]  # fmt: skip
    assert STOPPED_NOTE not in table.notes
    # 1e-1 reports: 1e-2 is the best of three and goes on, the other two stop at rung 0.
    assert db.rung(1e-1, 0, 0.7, 0.6) == "stopped"
    (table,) = tables(db.path, "lr")
    assert texts(table.blocks[0], "lora", [*LRS, "best LR"]) == [
        "0.4500 (stopped, rung 0)", "— (1 queued)", "0.6000 (stopped, rung 0)", "— (1 failed)",
        "—"]  # fmt: skip
    assert STOPPED_NOTE in table.notes
    db.close()


# --- the figure ----------------------------------------------------------------------------------


def test_the_lr_sweep_draws_stopped_learning_rates_hollow_with_a_legend_entry(finished: str):
    engine = open_engine(finished, read_only=True)
    fig = lr_sweep(load_data(engine), SCORING)
    engine.dispose()
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["lora"].get_xdata()) == [1e-2]  # the line joins final scores only
    hollow = lines["_stopped"]
    assert list(hollow.get_xdata()) == [1e-3, 1e-1]
    assert list(hollow.get_ydata()) == pytest.approx([0.5, 0.3])
    assert hollow.get_markerfacecolor() == "none" and hollow.get_linestyle() == "None"
    assert to_rgba(hollow.get_markeredgecolor()) == to_rgba(lines["lora"].get_color())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["lora", "best lr (val rule)", STOPPED_LABEL]


# --- report --table search -----------------------------------------------------------------------

SEARCH_COLUMNS = ["chosen LR", "score", "steps", "grid steps", "share (%)", *LRS]


def test_the_search_table_by_hand(finished: str):
    (table,) = tables(finished, "search")
    (block,) = table.blocks
    assert block.columns == SEARCH_COLUMNS
    # Steps: 1e-3 and 1e-1 trained rung 0 (1 step) per seed, 1e-2 all 9, 1.0 nothing:
    # 2 x 1 + 2 x 9 + 2 x 1 = 22 of a grid's 8 jobs x 9 steps = 72, 30.6%.
    assert texts(block, "lora", SEARCH_COLUMNS) == [
        "1e-02", DONE_1E2, "22", "72", "30.6", "rung 0", "full", "rung 0", "failed"]  # fmt: skip
    assert block.cell("lora", "score").mark == ""
    assert "sweep hs: successive halving, eta 3 (each rung keeps the best 1/3), first rung 1 " \
           "epoch." in table.notes  # fmt: skip


def test_the_search_table_while_the_sweep_runs(tmp_path: Path):
    db = HalvingDB(tmp_path / "h.db", [1e-3, 1e-2, 1e-1, 1.0])
    db.fail(1.0)
    db.rung(1e-3, 0, 0.5, 0.45)
    db.rung(1e-2, 0, 0.9, 0.8)
    db.claim(1e-1)  # running
    (table,) = tables(db.path, "search")
    # No job trained in full yet: no choice, and the full length is not known.
    assert texts(table.blocks[0], "lora", SEARCH_COLUMNS) == [
        "—", "— (searching)", "2", "—", "—", "paused (rung 0)", "paused (rung 0)",
        "training (rung 0)", "failed"]  # fmt: skip
    db.close()


def test_search_from_the_command_line_in_every_format(finished: str, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--table", "search", "--format", "md,csv,tex",
                                      "--out", str(out), "--db", finished])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["search-table.csv", "search-table.md",
                                                     "search-table.tex"]  # fmt: skip
    md = (out / "search-table.md").read_text()
    assert f"| lora | 1e-02 | {DONE_1E2} | 22 | 72 | 30.6 | rung 0 | full | rung 0 | failed |" in md
    assert "share (\\%)" in (out / "search-table.tex").read_text()


@pytest.mark.parametrize("name", ["lr", "search"])
def test_latex_of_a_halving_sweep_is_plain_ascii_one_cell_per_column(finished: str, name: str):
    # As tests/test_report_latex.py checks every table on grid sweeps.
    (table,) = tables(finished, name)
    tex = latex(table)
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert body.isascii() and _balanced(body)
    ((header,), (rows,)) = (_headers(tex), _tabulars(tex))
    block = table.blocks[0]
    assert header == [latex_text(h) for h in (block.corner, *block.columns)]
    shown = []
    for column, text in zip(block.columns, texts(block, "lora", block.columns), strict=True):
        bold = block.cell("lora", column).mark == "best"
        shown.append(f"\\textbf{{{latex_text(text)}}}" if bold else latex_text(text))
    assert rows == [[latex_text("lora"), *shown]]


def test_search_on_a_grid_sweep_says_so(tmp_path: Path):
    db = str(tmp_path / "grid.db")
    plan({"task": "noop", "variant": "lora", "lr": [1e-3, 1e-2], "name": "g"}, db=db)
    result = CliRunner().invoke(app, ["report", "--table", "search", "--db", db,
                                      "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2
    assert "did not search their learning rates by successive halving" in result.output
    assert "Traceback" not in result.output
