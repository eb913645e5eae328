"""Learning rates that successive halving stopped: what a score table shows for them.

A stopped job lost a rung, so it has no final score (`load` reads metrics of done jobs only,
and a stopped job's history ends early). What is known is its test score at the end of the
last rung it trained, which the queue stores with the rung (`rung.test_score`, the task's
primary metric on the reported split). Score tables show that value, marked, so a reader sees
how far behind a learning rate was when it was stopped; it never competes with final scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from lorabench.catalog.task import get_task_info
from lorabench.report.cells import Block, scale
from lorabench.report.load import Data
from lorabench.report.select import Scoring

STOPPED_COLUMNS = ["job_id", "rung", "value"]
STOPPED_NOTE = (
    "(stopped, rung k): successive halving stopped this learning rate "
    "after rung k (rungs count from 0; each is eta times longer than the one before). Its "
    "value is the mean over its seeds of the test score at the end of that rung, not a "
    "full-budget score: it is never bold, never tested for ties and never the best LR."
)


def stopped_scores(data: Data, scoring: Scoring) -> pd.DataFrame:
    """Per stopped job: the rung it stopped at and its test score there (display units), NaN
    where unknown: not finite, or the table shows another metric than the primary one (the
    only one a rung records)."""
    stopped = data.jobs.loc[data.jobs["state"] == "stopped", ["job_id", "task"]]
    if stopped.empty or data.rungs.empty:
        return pd.DataFrame(columns=STOPPED_COLUMNS)
    last = data.rungs.sort_values(["job_id", "rung"]).drop_duplicates("job_id", keep="last")
    merged = stopped.merge(last[["job_id", "rung", "test_score"]], on="job_id")
    values = []
    for task, score in zip(merged["task"].astype(str), merged["test_score"], strict=True):
        primary = scoring.test_metric(task) == get_task_info(task).primary_metric
        factor = scale(scoring.spec(task).percent)[0]
        values.append(float(score) * factor if primary and pd.notna(score) else float("nan"))
    return merged.assign(value=values)[STOPPED_COLUMNS].reset_index(drop=True)


def stopped_notes(blocks: Iterable[Block]) -> list[str]:
    """The note explaining the mark, when any cell of ``blocks`` carries it."""
    shown = any(cell.stopped is not None for block in blocks for cell in block.cells.values())
    return [STOPPED_NOTE] if shown else []
