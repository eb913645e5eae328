"""Building blocks of score tables: scored jobs, a block of seed cells, and the notes every
score table carries (how a cell was computed, which jobs fell back to the test rule)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lorabench.report.cells import Block, scale, seed_cells
from lorabench.report.configs import NothingToReport
from lorabench.report.load import Data
from lorabench.report.select import Scoring

CELL_NOTE = (
    "Mean ± sample std (ddof=1) over the seeds of one configuration, each job scored at its "
    "{epoch}; [low, high]: 95% interval of the mean (Student t over seeds, with ≥ 2 seeds); no ± "
    "with a single seed; — = no finished run (its unfinished jobs in parentheses)."
)
FALLBACK_NOTE = (
    "--select val: {count} job(s) have no select rows (a database from before the select split, "
    "or select_split off); their epoch, and their configuration's learning rate, were chosen on "
    "the test split (the paper's rule)."
)


def require_jobs(data: Data, what: str = "") -> None:
    if data.jobs.empty:
        if what:
            raise NothingToReport(f"no {what} jobs in the database; plan and run them first")
        raise NothingToReport("no jobs in the database; plan and run a sweep first")


def decimals(scoring: Scoring, task: str) -> int:
    return scale(scoring.spec(task).percent)[1]


def score_block(
    title: str,
    jobs: pd.DataFrame,
    rows: pd.Series,
    columns: pd.Series,
    scores: pd.DataFrame,
    scoring: Scoring,
    *,
    order: Sequence[str] | None = None,
    corner: str = "",
    stopped: pd.DataFrame | None = None,
) -> Block:
    """A block of seed cells: ``rows``/``columns`` label each job of ``jobs``; ``order`` gives
    the columns' order (default: as first seen). Rows are sorted as text. ``stopped``
    (`stopped.stopped_scores`): show the learning rates successive halving stopped."""
    cells = seed_cells(jobs, rows, columns, scores, stopped)
    names = list(order) if order is not None else list(dict.fromkeys(columns.astype(str)))
    places = {}
    for (_, column), cell in cells.items():
        if cell.task:
            places[column] = decimals(scoring, cell.task)
    return Block(title, sorted({r for r, _ in cells}), names, cells, places, corner=corner)


def score_notes(scoring: Scoring, scores: pd.DataFrame) -> list[str]:
    notes = [CELL_NOTE.format(epoch=scoring.describe())]
    fallback = int(scores["fallback"].astype(bool).sum()) if len(scores) else 0
    if fallback:
        notes.append(FALLBACK_NOTE.format(count=fallback))
    return notes
