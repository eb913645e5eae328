"""What the selection rule changes: per task and configuration, the learning rate each rule
picks and the test score reported there (mean over seeds of each job's chosen epoch), and the
optimism of the paper's rule: its score minus the val rule's, in the metric's better direction
(positive: the test rule looks better than a choice made without seeing the test examples)."""

from __future__ import annotations

import dataclasses
import math

from lorabench.report.blocks import decimals, require_jobs, score_notes
from lorabench.report.cells import Block, Cell, ReportTable, display_scores
from lorabench.report.configs import format_lr
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.tables.lr import lr_block

COLUMNS = ("lr (test rule)", "test rule", "lr (val rule)", "val rule", "optimism")
FALLBACK = "*"


@register_table("selection", no_paper="the paper reports only its own (test) rule")
def selection_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    require_jobs(data)
    rules = {s: dataclasses.replace(scoring, select=s) for s in ("test", "val")}
    scores = {s: display_scores(data, how) for s, how in rules.items()}
    blocks, fallback = [], False
    for task in sorted(data.jobs["task"].astype(str).unique()):
        picked = {s: lr_block(data, how, task, scores[s]) for s, how in rules.items()}
        sign = 1.0 if scoring.spec(task).higher_is_better else -1.0
        rows = picked["test"].block.rows
        cells: dict[tuple[str, str], Cell] = {}
        for row in rows:
            means = {}
            for rule, (lr_column, score_column) in {
                "test": COLUMNS[:2],
                "val": COLUMNS[2:4],
            }.items():
                lr = picked[rule]
                if row not in lr.chosen.index:
                    continue
                chosen_lr, by = lr.chosen.at[row, "lr"], lr.chosen.at[row, "by"]
                flag = FALLBACK if rule == "val" and by == "test" else ""
                fallback = fallback or bool(flag)
                cells[(row, lr_column)] = Cell(label=format_lr(chosen_lr) + flag)
                cell = dataclasses.replace(lr.block.cell(row, format_lr(chosen_lr)), mark="")
                cells[(row, score_column)] = cell
                means[rule] = cell.mean
            if len(means) == 2:
                optimism = sign * (means["test"] - means["val"])
                cells[(row, COLUMNS[4])] = (
                    Cell(optimism, n=1) if not math.isnan(optimism) else Cell()
                )
        places = dict.fromkeys(COLUMNS, decimals(scoring, task))
        title = f"{task}: {scoring.test_metric(task)} at each rule's learning rate"
        blocks.append(Block(title, rows, list(COLUMNS), cells, places, corner="variant"))
    notes = [
        "test rule: epoch and learning rate chosen on the test split (the paper's); val rule: "
        "on the select split, test score reported. optimism = test rule − val rule (in the "
        "metric's better direction).",
        *score_notes(rules["val"], scores["val"]),
    ]
    if fallback:
        notes.append(f"{FALLBACK}: no select rows for a job of this configuration; its learning "
                     "rate was chosen by the test rule.")  # fmt: skip
    return ReportTable("selection", "Selection rule: test (the paper's) vs val", blocks, notes)
