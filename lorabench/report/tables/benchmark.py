"""GLUE (Tables IV-X layout) and image classification: one block per learning rate, rows the
configurations, columns the benchmark's tasks (paper order) and AVG = mean of the task means,
shown only when every task of the benchmark has a value (9 GLUE tasks, 7 image tasks), as the
paper's AVG is over all of them."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from lorabench.catalog.task import task_names
from lorabench.report.blocks import require_jobs, score_block, score_notes
from lorabench.report.cells import Cell, ReportTable, display_scores
from lorabench.report.compare import mark_best, tie_notes
from lorabench.report.configs import format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.stopped import stopped_notes, stopped_scores

GLUE_TASKS = (
    "glue-sst2", "glue-cola", "glue-mnli", "glue-mrpc", "glue-qnli",
    "glue-qqp", "glue-rte", "glue-stsb", "glue-wnli",
)  # fmt: skip
AVG = "AVG"
AXES = ("task", "lr")


def ic_tasks() -> tuple[str, ...]:
    return tuple(n for n in task_names() if n.startswith("ic-"))


def lr_key(lr: float) -> float:
    # Learning rates read from JSON and from CSV must meet as dict keys.
    return float(f"{float(lr):.6e}")


def _benchmark(
    name: str, title: str, tasks: tuple[str, ...], data: Data, scoring: Scoring,
    paper: dict[tuple[str, str, float], float] | None,
) -> ReportTable:  # fmt: skip
    data = data.only(data.jobs["task"].isin(tasks) & data.jobs["lr"].notna())
    require_jobs(data, name)
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    jobs = data.jobs.assign(lr=data.jobs["lr"].map(lr_key))
    rows = row_labels(jobs, AXES)
    variant_of = dict(zip(rows, jobs["variant"].astype(str), strict=True))
    columns = [t for t in tasks if t in set(jobs["task"])]
    blocks, untested = [], Counter()
    for lr in sorted(set(jobs["lr"])):
        at = jobs["lr"] == lr
        heading = f"learning rate {format_lr(lr)}"
        block = score_block(heading, jobs[at], rows[at], jobs.loc[at, "task"], scores, scoring,
                            order=[*columns, AVG], stopped=stopped)  # fmt: skip
        for row in block.rows:
            # Final scores only: a stopped learning rate's rung score is no task mean.
            cells = [block.cell(row, t) for t in tasks]
            means = [c.mean if c.scored else math.nan for c in cells]
            if all(not pd.isna(m) for m in means):
                block.cells[(row, AVG)] = Cell(sum(means) / len(means), n=1)
            if paper is not None:
                for column in block.columns:
                    key = ("glue-avg" if column == AVG else column, variant_of[row], lr)
                    block.cells.setdefault((row, column), Cell()).paper = paper.get(key, math.nan)
        untested += mark_best(block, data, scoring, columns=columns)
        higher = all(scoring.spec(t).higher_is_better for t in columns)
        mark_best(block, data, scoring, columns=[AVG], higher_is_better=higher)
        blocks.append(block)
    notes = [
        f"AVG: mean of the task means, only when all {len(tasks)} tasks have a value.",
        *score_notes(scoring, scores),
        *tie_notes(untested),
        *stopped_notes(blocks),
    ]
    return ReportTable(name, title, blocks, notes, compare=paper is not None)


def _glue_paper() -> dict[tuple[str, str, float], float]:
    from lorabench.report.reference import paper_table

    return {
        (str(r.task), str(r.variant), lr_key(r.lr)): float(r.value)
        for r in paper_table("glue").itertuples(index=False)
    }


@register_table("glue", paper=True)
def glue_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    paper = _glue_paper() if compare else None
    return _benchmark("glue", "GLUE by learning rate (Tables IV-X layout)", GLUE_TASKS, data,
                      scoring, paper)  # fmt: skip


@register_table(
    "ic", no_paper="the paper's image-classification tables (XI-XIX) are not available as numbers"
)
def ic_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    return _benchmark("ic", "Image classification by learning rate", ic_tasks(), data, scoring,
                      None)  # fmt: skip
