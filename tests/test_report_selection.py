"""The two selection rules end to end on a hand-made sweep in which they pick different learning
rates, and the statistical ties (≈, the ties table, the finding) from stored outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from report_db import ReportDB
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.report.finding import finding, render_finding
from lorabench.report.registry import build_tables, get_figure
from lorabench.report.render import markdown
from lorabench.report.select import Scoring
from lorabench.report.stats import N_RESAMPLES

N = 100  # test examples
# (variant, lr, seed) -> (test accuracy per epoch, select accuracy per epoch)
RUNS = {
    # lora: the test rule picks 1e-3 (test means .79 vs .83), the val rule 1e-4 (select means
    # .76 vs .635), where the val epochs score .70 and .74 on test.
    ("lora", 1e-4, 0): ([0.70, 0.80], [0.75, 0.72]),
    ("lora", 1e-4, 1): ([0.74, 0.78], [0.77, 0.70]),
    ("lora", 1e-3, 0): ([0.76, 0.82], [0.60, 0.65]),
    ("lora", 1e-3, 1): ([0.80, 0.84], [0.62, 0.61]),
    # dora: both rules pick 1e-3 and score .91 there.
    ("dora", 1e-4, 0): ([0.60, 0.65], [0.50, 0.55]),
    ("dora", 1e-4, 1): ([0.61, 0.63], [0.52, 0.56]),
    ("dora", 1e-3, 0): ([0.90, 0.86], [0.80, 0.70]),
    ("dora", 1e-3, 1): ([0.88, 0.92], [0.81, 0.83]),
    # pissa: dora except one example less at 1e-3 seed 0 (.89): tied with dora.
    ("pissa", 1e-4, 0): ([0.60, 0.65], [0.50, 0.55]),
    ("pissa", 1e-4, 1): ([0.61, 0.63], [0.52, 0.56]),
    ("pissa", 1e-3, 0): ([0.89, 0.86], [0.80, 0.70]),
    ("pissa", 1e-3, 1): ([0.88, 0.92], [0.81, 0.83]),
}


def _right_first(accuracy: float) -> dict:
    """Right on the first ``accuracy * N`` examples: a better job is right wherever a worse is."""
    return {"correct": np.arange(N) < round(accuracy * N)}


def _fill(db: ReportDB, *, outcomes: bool, select: bool = True) -> None:
    for (variant, lr, seed), (test, held) in RUNS.items():
        per_epoch = {e: _right_first(v) for e, v in enumerate(test, start=1)}
        db.add(
            {"task": "bbc-news", "variant": variant, "lr": lr, "seed": seed},
            test={"accuracy": test},
            select_={"accuracy": held} if select else None,
            outcomes=per_epoch if outcomes else None,
        )  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    db = ReportDB(tmp_path_factory.mktemp("sel") / "sel.db")
    _fill(db, outcomes=True)
    db.close()
    return db


def _cells(block, columns) -> dict:  # noqa: ANN001
    return {row: [block.cell(row, c).text(2, False) for c in columns] for row in block.rows}


def test_selection_table_exact_values(db):
    with db.data() as data:
        (table,) = build_tables("selection", data, Scoring())
    (block,) = table.blocks
    assert block.columns == ["lr (test rule)", "test rule", "lr (val rule)", "val rule",
                             "optimism"]  # fmt: skip
    assert _cells(block, block.columns) == {
        "dora": ["1e-03", "91.00 ± 1.41 [78.29, 103.71]", "1e-03", "91.00 ± 1.41 [78.29, 103.71]",
                 "0.00"],
        "lora": ["1e-03", "83.00 ± 1.41 [70.29, 95.71]", "1e-04", "72.00 ± 2.83 [46.59, 97.41]",
                 "11.00"],
        "pissa": ["1e-03", "90.50 ± 2.12 [71.44, 109.56]", "1e-03",
                  "90.50 ± 2.12 [71.44, 109.56]", "0.00"],
    }  # fmt: skip
    assert block.cell("lora", "optimism").mean == pytest.approx(11.0)


def test_lr_table_best_lr_and_cells_follow_the_rule(db):
    with db.data() as data:
        (val,) = build_tables("lr", data, Scoring(select="val"))
        (test,) = build_tables("lr", data, Scoring(select="test"))
    lora = {t: [b.cell("lora", c) for c in ("1e-04", "1e-03", "best LR")]
            for t, b in (("val", val.blocks[0]), ("test", test.blocks[0]))}  # fmt: skip
    assert [c.mean for c in lora["val"][:2]] == pytest.approx([72.0, 81.0])
    assert lora["val"][2].label == "1e-04"
    assert [c.mean for c in lora["test"][:2]] == pytest.approx([79.0, 83.0])
    assert lora["test"][2].label == "1e-03"
    assert "best LR: the learning rate with the best mean select score" in markdown(val)
    assert "have no select rows" not in markdown(val)


def test_lr_table_marks_ties_with_the_best(db):
    with db.data() as data:
        (table,) = build_tables("lr", data, Scoring())
    block = table.blocks[0]
    column = {r: block.cell(r, "1e-03") for r in block.rows}
    assert [column[r].mark for r in ("dora", "lora", "pissa")] == ["best", "", "tie"]
    assert column["lora"].p_value == pytest.approx(1 / (N_RESAMPLES + 1))
    assert 0.05 <= column["pissa"].p_value < 1
    assert "| pissa | " in markdown(table) and "90.50 ± 2.12 [71.44, 109.56] ≈" in markdown(table)
    assert "≈ not tested" not in markdown(table)


def test_ties_table(db):
    with db.data() as data:
        (table,) = build_tables("ties", data, Scoring())
    (block,) = table.blocks
    assert block.rows == ["dora", "pissa", "lora"]  # best first
    texts = _cells(block, ["lr", "p-value", "tied"])
    assert texts["dora"] == ["1e-03", "—", "best"]
    assert texts["lora"] == ["1e-04", "0.0001", "no"]
    assert texts["pissa"][0] == "1e-03" and texts["pissa"][2] == "yes"
    assert float(texts["pissa"][1]) == pytest.approx(0.99**N, abs=0.03)  # P(example unseen)
    assert "one-sided paired bootstrap" in markdown(table)


def test_lr_sweep_rings_the_chosen_learning_rate(db):
    with db.data() as data:
        for select, lora_at in (("val", (1e-4, 72.0)), ("test", (1e-3, 83.0))):
            fig = get_figure("lr-sweep")(data, Scoring(select=select))
            (panel,) = fig.axes
            rings = {line.get_markeredgecolor(): (line.get_xdata()[0], line.get_ydata()[0])
                     for line in panel.get_lines() if line.get_label() == "_chosen"}  # fmt: skip
            lines = {line.get_label(): line for line in panel.get_lines()}
            assert rings[lines["lora"].get_color()] == pytest.approx(lora_at)
            assert rings[lines["dora"].get_color()] == pytest.approx((1e-3, 91.0))
            legend = [t.get_text() for t in panel.get_legend().get_texts()]
            assert legend == ["dora", "lora", "pissa", f"best lr ({select} rule)"]


def test_finding_under_the_val_rule_with_intervals_and_ties(db):
    with db.data() as data:
        found = finding(data, Scoring(select="val"), "bbc-news")
    assert found.best_lr == {"dora": 1e-3, "lora": 1e-4, "pissa": 1e-3}
    assert found.best_score == pytest.approx({"dora": 0.91, "lora": 0.72, "pissa": 0.905})
    assert found.variant_spread_at_best == pytest.approx(0.19)
    assert found.lr_spread == pytest.approx({"dora": 0.27, "lora": 0.09, "pissa": 0.265})
    low, high = found.variant_spread_ci
    assert low < 0.19 < high
    assert all(lo <= found.lr_spread[v] <= hi for v, (lo, hi) in found.lr_spread_ci.items())
    assert found.best == "dora" and found.tied == ["pissa"]
    table, text = render_finding(found, metric="accuracy")
    assert "95% interval" in [c.header for c in table.columns]
    assert "across variants, each at its best lr, it moves by 19.00 points" in text
    assert "Statistically tied with the best (dora) at α = 0.05" in text
    assert "pissa (p = 0." in text and "lora (p" not in text
    assert "chosen on the select split (--select val)" in text


def test_without_select_rows_or_outcomes_everything_says_so(tmp_path):
    db = ReportDB(tmp_path / "old.db")
    _fill(db, outcomes=False, select=False)
    db.close()
    with db.data() as data:
        (selection,) = build_tables("selection", data, Scoring())
        found = finding(data, Scoring(), "bbc-news")
    block = selection.blocks[0]
    assert block.cell("lora", "lr (val rule)").label == "1e-03*"  # the test rule's pick
    assert block.cell("lora", "optimism").mean == pytest.approx(0.0)
    assert "*: no select rows" in markdown(selection)
    _, text = render_finding(found, metric="accuracy")
    assert "No job has select rows (--select val)" in text
    assert "No 95% intervals: no per-example outcomes stored" in text
    assert "Ties not tested" in text


def test_compare_paper_defaults_to_the_test_rule(db, tmp_path):
    runner = CliRunner()
    args = ["report", "--db", str(db.path), "--table", "lr", "--format", "md", "--out",
            str(tmp_path)]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    assert "| lora | **72.00" in (tmp_path / "lr-table-bbc-news.md").read_text()
    assert runner.invoke(app, [*args, "--compare", "paper"]).exit_code == 0
    text = (tmp_path / "lr-table-bbc-news.md").read_text()
    assert "| lora | **79.00" in text and "(best epoch) by variant" in text
    assert "nothing to compare" in text
    assert runner.invoke(app, [*args, "--compare", "paper", "--select", "val"]).exit_code == 0
    text = (tmp_path / "lr-table-bbc-news.md").read_text()
    assert "--select val beside the paper's numbers" in text
