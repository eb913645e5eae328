"""High rank (Table III layout): jobs with rank >= 64 (the paper's sweep uses r = 128); rows
"variant r=R α=A" (and any other field that varies), columns task x learning rate."""

from __future__ import annotations

import math

from lorabench.report.blocks import require_jobs, score_block, score_notes
from lorabench.report.cells import Cell, ReportTable, display_scores
from lorabench.report.compare import mark_best, tie_notes
from lorabench.report.configs import format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.stopped import stopped_notes, stopped_scores
from lorabench.report.tables.benchmark import lr_key

HIGH_RANK = 64
AXES = ("task", "lr")


def _paper() -> dict[tuple, float]:
    from lorabench.report.reference import paper_table

    return {
        (str(p.task), str(p.variant), int(p.rank), float(p.alpha), lr_key(p.lr)): float(p.value)
        for p in paper_table("highrank").itertuples(index=False)
    }


@register_table("highrank", paper=True)
def highrank_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    data = data.only(data.jobs["rank"].astype(float) >= HIGH_RANK)
    require_jobs(data, f"high-rank (rank >= {HIGH_RANK})")
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    jobs = data.jobs.assign(lr=data.jobs["lr"].astype(float))
    rows = row_labels(jobs, AXES, always=("rank", "alpha"))
    columns = jobs["task"].astype(str) + " " + jobs["lr"].map(format_lr)
    order = list(dict.fromkeys(columns[jobs.sort_values(["task", "lr"]).index]))
    block = score_block("rows: variant, rank, alpha; columns: task and learning rate", jobs, rows,
                        columns, scores, scoring, order=order, stopped=stopped)  # fmt: skip
    if compare:
        paper = _paper()
        for index, job in jobs.iterrows():
            key = (str(job["task"]), str(job["variant"]), int(job["rank"]), float(job["alpha"]),
                   lr_key(job["lr"]))  # fmt: skip
            cell = block.cells.setdefault((rows[index], columns[index]), Cell())
            cell.paper = paper.get(key, math.nan)
    untested = mark_best(block, data, scoring)
    notes = [*score_notes(scoring, scores), *tie_notes(untested), *stopped_notes([block])]
    title = f"High rank (rank >= {HIGH_RANK}; Table III layout)"
    return ReportTable("highrank", title, [block], notes, compare=compare)
