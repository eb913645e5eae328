"""NLG by learning rate: one block per NLG task, rows the configurations, columns the learning
rates (the paper shows this sweep as a plot, Fig. 7)."""

from __future__ import annotations

from collections import Counter

from lorabench.catalog.task import get_task_info, task_names
from lorabench.report.blocks import require_jobs, score_block, score_notes
from lorabench.report.cells import ReportTable, display_scores
from lorabench.report.compare import mark_best, tie_notes
from lorabench.report.configs import format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.stopped import stopped_notes, stopped_scores

AXES = ("task", "lr")


@register_table(
    "nlg", no_paper="the paper's NLG learning-rate sweep is a plot (Fig. 7), not numbers"
)
def nlg_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    nlg = [t for t in task_names() if get_task_info(t).family == "nlg"]
    data = data.only(data.jobs["task"].isin(nlg))
    require_jobs(data, "NLG")
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    blocks, untested = [], Counter()
    for task in sorted(data.jobs["task"].unique()):
        jobs = data.jobs[data.jobs["task"] == task]
        lr = jobs["lr"].astype(float)
        block = score_block(f"{task}: {scoring.test_metric(task)}", jobs, row_labels(jobs, AXES),
                            lr.map(format_lr), scores, scoring,
                            order=[format_lr(x) for x in sorted(set(lr))],
                            stopped=stopped)  # fmt: skip
        untested += mark_best(block, data, scoring)
        blocks.append(block)
    notes = [*score_notes(scoring, scores), *tie_notes(untested), *stopped_notes(blocks)]
    return ReportTable("nlg", "NLG by learning rate", blocks, notes)
