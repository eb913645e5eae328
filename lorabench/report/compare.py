"""The best cell of a column (bold) and the cells statistically tied with it (≈).

Best: the best displayed mean in the metric's direction (MetricSpec.higher_is_better; every
displayed tie is bold). Tied: a cell whose one-sided paired-bootstrap p-value against the best
(`stats.tie_p_value`, over the test examples, seeds paired) is at least `stats.ALPHA`. Cells that
cannot be tested (no stored outcomes, a metric the outcomes cannot give) get no ≈, and the
table's notes say how many and why.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from lorabench.catalog.task import get_task_info
from lorabench.report.cells import Block, Cell
from lorabench.report.load import Data
from lorabench.report.select import Scoring
from lorabench.report.stats import ALPHA, N_RESAMPLES, prepare, tie_p_value

TIE_NOTE = (
    f"Bold: the best value in its column; ≈: not significantly worse than it (one-sided paired "
    f"bootstrap over the test examples, {N_RESAMPLES:,} resamples, seeds paired, p ≥ {ALPHA:g})."
)
NO_OUTCOMES = "no per-example outcomes stored for a job (older database)"
NOT_RECOMPUTABLE = "the metric cannot be recomputed from the stored outcomes"
OTHER_EXAMPLES = "the jobs were scored on different examples"


def _paired(a: Cell, b: Cell) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(job_id, epoch) of each side: the seeds both have when they share any, else all."""
    left = {seed: (job, epoch) for job, seed, epoch in a.picks}
    right = {seed: (job, epoch) for job, seed, epoch in b.picks}
    common = sorted(set(left) & set(right))
    if common:
        return [left[s] for s in common], [right[s] for s in common]
    return list(left.values()), list(right.values())


def prepared(
    data: Data, scoring: Scoring, task: str, keys: list[tuple[int, int]]
) -> tuple[list, str]:
    """The jobs ``keys`` (job_id, epoch) ready for `stats.bootstrap`, or ([], why not)."""
    metric = scoring.test_metric(task)
    primary = metric == get_task_info(task).primary_metric
    outcomes = data.outcomes.read(keys)
    if any(key not in outcomes for key in keys):
        return [], NO_OUTCOMES
    jobs = [prepare(metric, outcomes[key], primary=primary) for key in keys]
    if any(job is None for job in jobs):
        return [], NOT_RECOMPUTABLE
    return jobs, ""


def cell_keys(cell: Cell) -> list[tuple[int, int]]:
    return [(job, epoch) for job, _, epoch in cell.picks]


def paired_p_value(data: Data, scoring: Scoring, best: Cell, other: Cell) -> tuple[float, str]:
    """(p, "") for ``other`` against ``best``, or (nan, why it cannot be tested)."""
    sides = []
    for keys in _paired(best, other):
        jobs, why = prepared(data, scoring, best.task, keys)
        if why:
            return math.nan, why
        sides.append(jobs)
    higher = scoring.spec(best.task).higher_is_better
    try:
        return tie_p_value(sides[0], sides[1], higher_is_better=higher), ""
    except ValueError:
        return math.nan, OTHER_EXAMPLES


def best_rows(cells: dict[str, Cell], decimals: int, higher_is_better: bool) -> list[str]:
    """Rows whose displayed mean equals the best displayed mean."""
    shown = {r: round(c.mean, decimals) for r, c in cells.items() if c.scored}
    if not shown:
        return []
    best = max(shown.values()) if higher_is_better else min(shown.values())
    return [r for r, v in shown.items() if v == best]


def mark_best(
    block: Block,
    data: Data,
    scoring: Scoring,
    *,
    columns: Iterable[str] | None = None,
    higher_is_better: bool | None = None,
) -> Counter:
    """Bold the best cell of each column and ≈ the tied ones. ``higher_is_better`` given: bold
    only, in that direction, for columns no paired test applies to (an average over tasks).
    Returns why cells went untested, counted."""
    untested: Counter = Counter()
    for column in block.columns if columns is None else columns:
        cells = {r: block.cell(r, column) for r in block.rows if block.cell(r, column).scored}
        tasks = {c.task for c in cells.values()}
        if higher_is_better is not None:
            for row in best_rows(cells, block.decimals.get(column, 2), higher_is_better):
                cells[row].mark = "best"
            continue
        if not cells or len(tasks) != 1 or "" in tasks:
            continue
        higher = scoring.spec(tasks.pop()).higher_is_better
        winners = best_rows(cells, block.decimals.get(column, 2), higher)
        for row in winners:
            cells[row].mark = "best"
        best = cells[winners[0]]
        for row, cell in cells.items():
            if row in winners:
                continue
            cell.p_value, why = paired_p_value(data, scoring, best, cell)
            if why:
                untested[why] += 1
            elif cell.p_value >= ALPHA:
                cell.mark = "tie"
    return untested


def tie_notes(untested: Counter) -> list[str]:
    notes = [TIE_NOTE]
    for why, count in sorted(untested.items()):
        notes.append(f"≈ not tested for {count} cell(s): {why}.")
    return notes
