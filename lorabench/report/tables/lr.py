"""The learning-rate table: per task, configurations x learning rates, and each configuration's
best learning rate under the selection rule. The lr-sweep figure and the quickstart finding read
the same `lr_block`, so all three agree on cells and chosen learning rates."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lorabench.report.blocks import require_jobs, score_block, score_notes
from lorabench.report.cells import Block, Cell, ReportTable, display_scores
from lorabench.report.compare import mark_best, tie_notes
from lorabench.report.configs import format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring, choose_lrs
from lorabench.report.stopped import stopped_notes, stopped_scores

AXES = ("task", "lr")
BEST_LR = "best LR"
BEST_LR_NOTE = {
    "val": "best LR: the learning rate with the best mean select score over seeds.",
    "test": "best LR: the learning rate with the best mean test score over seeds (the paper's "
    "rule).",
}


@dataclass
class LrBlock:
    task: str
    metric: str
    block: Block  # rows: configurations; columns: format_lr of each learning rate
    lrs: list[float]  # the columns' learning rates, ascending
    chosen: pd.DataFrame  # per row: lr, by ("val" | "test")
    percent: bool


def lr_block(
    data: Data,
    scoring: Scoring,
    task: str,
    scores: pd.DataFrame,
    stopped: pd.DataFrame | None = None,
) -> LrBlock:
    """The ``task``'s configurations x learning rates from ``scores`` (`display_scores`);
    with ``stopped`` (`stopped_scores`), the learning rates successive halving stopped show
    their last rung's score (never chosen: the choice reads ``scores`` only)."""
    jobs = data.jobs[data.jobs["task"] == task]
    rows = row_labels(jobs, AXES)
    lr = jobs["lr"].astype(float)
    lrs = sorted(set(lr))
    block = score_block(task, jobs, rows, lr.map(format_lr), scores, scoring,
                        order=[format_lr(x) for x in lrs], corner="variant",
                        stopped=stopped)  # fmt: skip
    keyed = scores.merge(pd.DataFrame({"job_id": jobs["job_id"], "row": rows, "lr": lr}),
                         on="job_id")  # fmt: skip
    spec = scoring.spec(task)
    chosen = choose_lrs(
        keyed, select=scoring.select, higher_is_better=spec.higher_is_better,
        select_higher_is_better=scoring.spec(task, scoring.select_metric(task)).higher_is_better,
    )  # fmt: skip
    return LrBlock(task, scoring.test_metric(task), block, lrs, chosen, spec.percent)


@register_table("lr", no_paper="the paper gives no per-task learning-rate table for our tasks")
def lr_table(data: Data, scoring: Scoring, compare: bool = False) -> list[ReportTable]:
    """One table (and file pair, ``lr-table-<task>``) per task."""
    require_jobs(data)
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    tables = []
    for task in sorted(data.jobs["task"].astype(str).unique()):
        lr = lr_block(data, scoring, task, scores, stopped)
        untested = mark_best(lr.block, data, scoring)
        lr.block.columns.append(BEST_LR)
        for row in lr.block.rows:
            label = format_lr(lr.chosen.at[row, "lr"]) if row in lr.chosen.index else "—"
            lr.block.cells[(row, BEST_LR)] = Cell(label=label)
        title = f"{task}: {lr.metric} ({scoring.describe()}) by variant and learning rate"
        task_scores = scores[scores["task"] == task]
        notes = [*score_notes(scoring, task_scores), BEST_LR_NOTE[scoring.select],
                 *tie_notes(untested), *stopped_notes([lr.block])]  # fmt: skip
        tables.append(ReportTable("lr", title, [lr.block], notes, file=f"lr-table-{task}"))
    return tables
