"""Which configurations are statistically tied with the best, per task, each at its own
selected learning rate (the `--select` rule): the best is the best mean test score there; every
other gets the one-sided paired-bootstrap p-value against it (`stats.tie_p_value`) and is tied
when p ≥ α."""

from __future__ import annotations

import dataclasses
import math

from lorabench.report.blocks import decimals, require_jobs, score_notes
from lorabench.report.cells import Block, Cell, ReportTable, display_scores
from lorabench.report.compare import TIE_NOTE, best_rows, paired_p_value
from lorabench.report.configs import format_lr
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.stats import ALPHA
from lorabench.report.tables.lr import lr_block

COLUMNS = ("lr", "score", "p-value", "tied")


@register_table("ties", no_paper="the paper gives no per-example results to test")
def ties_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    require_jobs(data)
    scores = display_scores(data, scoring)
    blocks, reasons = [], set()
    for task in sorted(data.jobs["task"].astype(str).unique()):
        lr = lr_block(data, scoring, task, scores)
        places = decimals(scoring, task)
        at_best = {
            row: dataclasses.replace(
                lr.block.cell(row, format_lr(lr.chosen.at[row, "lr"])), mark=""
            )
            for row in lr.chosen.index
        }
        higher = scoring.spec(task).higher_is_better
        winners = best_rows(at_best, places, higher)
        if not winners:
            continue
        best = at_best[winners[0]]
        cells: dict[tuple[str, str], Cell] = {}
        for row, cell in at_best.items():
            cells[(row, "lr")] = Cell(label=format_lr(lr.chosen.at[row, "lr"]))
            cells[(row, "score")] = cell
            if row in winners:
                cell.mark = "best"
                cells[(row, "tied")] = Cell(label="best")
                continue
            p, why = paired_p_value(data, scoring, best, cell)
            cell.p_value = p
            if why:
                reasons.add(why)
                verdict = "untested"
            else:
                verdict = "yes" if p >= ALPHA else "no"
                cell.mark = "tie" if p >= ALPHA else ""
            cells[(row, "p-value")] = Cell(label="—" if math.isnan(p) else f"{p:.4f}")
            cells[(row, "tied")] = Cell(label=verdict)
        sign = -1.0 if higher else 1.0
        rows = sorted(at_best, key=lambda r: (sign * at_best[r].mean if at_best[r].scored
                                              else math.inf, r))  # fmt: skip
        title = f"{task}: {lr.metric}, each configuration at its selected learning rate"
        blocks.append(Block(title, rows, list(COLUMNS), cells, dict.fromkeys(COLUMNS, places),
                            corner="variant"))  # fmt: skip
    notes = [
        TIE_NOTE.replace("in its column", "at its selected learning rate"),
        *score_notes(scoring, scores),
        *(f"untested: {why}." for why in sorted(reasons)),
    ]
    return ReportTable("ties", "Configurations tied with the best", blocks, notes)
