"""The table model every table shares: cells in display units, blocks and tables, and a cell's
seed statistics.

A cell holds the jobs of one configuration (its seeds): mean ± sample std (ddof=1) and, with two
or more seeds, the Student-t 95% interval of the mean; no ± and no interval with one seed. A cell
without a finished score is "—" followed by the states of its jobs ("— (1 queued)"), unless
successive halving stopped its learning rate: then it shows the test score at the rung where it
stopped, marked "(stopped, rung k)"; that value is not a final score, so it is never scored
(bold, tied, chosen). Scores are kept in display units: x100 where the metric's MetricSpec says
percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

from lorabench.report.load import Data
from lorabench.report.select import Scoring, score_jobs
from lorabench.report.stats import t_interval

MISSING = "—"
TIE_MARK = "≈"
# Order in which unfinished states are listed in a missing cell ("2 queued, 1 running").
PENDING_STATES = ("queued", "running", "paused", "failed", "cancelled")
GONE_STATES = ("failed", "cancelled")  # seeds that no longer count for their learning rate
Pick = tuple[int, int, int]  # (job_id, seed, epoch): a scored job, for paired comparisons


@dataclass
class Cell:
    """One table cell in display units; ``paper``/``diff`` are NaN unless compared."""

    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    pending: str = ""
    paper: float = math.nan
    low: float = math.nan  # 95% interval of the mean over seeds (Student t), n >= 2
    high: float = math.nan
    label: str = ""  # a text cell (a chosen learning rate, a verdict), shown as it is
    mark: str = ""  # "best" (bold) or "tie" (≈, not significantly worse than the best)
    p_value: float = math.nan
    picks: tuple[Pick, ...] = ()
    task: str = ""
    # The rung at which successive halving stopped this learning rate (None: it was not):
    # mean, std, n and the interval are then of the test score at that rung's end.
    stopped: int | None = None

    @property
    def diff(self) -> float:
        return math.nan if self.stopped is not None else self.mean - self.paper

    @property
    def scored(self) -> bool:
        """A final score: one a table may rank, bold, test for ties or choose."""
        return bool(self.n) and not pd.isna(self.mean) and self.stopped is None

    def text(self, decimals: int, compare: bool) -> str:
        if self.label:
            return self.label
        if self.stopped is not None:
            text = f"{self._statistics(decimals)} {stopped_mark(self.stopped)}"
        elif not self.scored:
            text = f"{MISSING} ({self.pending})" if self.pending else MISSING
        else:
            text = self._statistics(decimals)
            if self.mark == "tie":
                text += f" {TIE_MARK}"
        if compare:
            if pd.isna(self.paper):
                text += " (paper —)"
            elif pd.isna(self.diff):
                text += f" (paper {self.paper:.{decimals}f})"
            else:
                text += f" (paper {self.paper:.{decimals}f}, {self.diff:+.{decimals}f})"
        return text

    def _statistics(self, decimals: int) -> str:
        text = f"{self.mean:.{decimals}f}"
        if self.n > 1 and not pd.isna(self.std):
            text += f" ± {self.std:.{decimals}f}"
        if not pd.isna(self.low):
            text += f" [{self.low:.{decimals}f}, {self.high:.{decimals}f}]"
        return text


def stopped_mark(rung: int) -> str:
    """What follows a stopped learning rate's value: plain text, the same in every format."""
    return f"(stopped, rung {rung})"


@dataclass
class Block:
    title: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    decimals: dict[str, int] = field(default_factory=dict)  # per column; 2 otherwise
    compared: tuple[str, ...] | None = None  # columns with a paper value; None: all
    corner: str = ""  # header of the row-label column

    def cell(self, row: str, column: str) -> Cell:
        return self.cells.get((row, column), Cell())


@dataclass
class ReportTable:
    name: str
    title: str
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)
    compare: bool = False
    file: str = ""  # file name stem; "<name>-table" when empty

    @property
    def stem(self) -> str:
        return self.file or f"{self.name}-table"


def describe_pending(counts: Mapping[str, int]) -> str:
    parts = [f"{counts[s]} {s}" for s in PENDING_STATES if counts.get(s)]
    if counts.get("done"):
        parts.append(f"{counts['done']} done without score")
    known = {*PENDING_STATES, "done"}
    parts += [f"{c} {s}" for s, c in sorted(counts.items()) if s not in known and c]
    return ", ".join(parts)


def seed_cell(values: pd.DataFrame) -> Cell:
    """Statistics of one configuration's scored jobs (columns job_id, seed, epoch, value)."""
    scores = values["value"].astype(float).tolist()
    low, high = t_interval(scores)
    ordered = values.sort_values("seed", kind="stable")
    picks = tuple(
        (int(j), int(s), int(e))
        for j, s, e in ordered[["job_id", "seed", "epoch"]].itertuples(index=False)
    )
    std = float(pd.Series(scores).std(ddof=1)) if len(scores) > 1 else math.nan
    task = str(values["task"].iloc[0]) if "task" in values.columns else ""
    return Cell(float(pd.Series(scores).mean()), std, len(scores), low=low, high=high,
                picks=picks, task=task)  # fmt: skip


def seed_cells(
    jobs: pd.DataFrame,
    rows: pd.Series,
    columns: pd.Series,
    scored: pd.DataFrame,
    stopped: pd.DataFrame | None = None,
) -> dict[tuple[str, str], Cell]:
    """Cells keyed (row, column) of ``jobs`` (rows/columns: labels aligned with ``jobs``);
    ``scored``: job_id, epoch and ``value`` (display units) of the jobs with a score;
    ``stopped``: job_id, rung and ``value`` of the jobs successive halving stopped."""
    if jobs.empty:
        return {}
    keyed = jobs[["job_id", "seed", "state", "task"]].assign(
        _row=rows.astype(str), _col=columns.astype(str)
    )
    merged = keyed.merge(scored[["job_id", "epoch", "value"]], on="job_id", how="left")
    cells: dict[tuple[str, str], Cell] = {}
    for (row, column), group in merged.groupby(["_row", "_col"], sort=False):
        done = group[group["value"].notna()]
        if len(done):
            cells[(row, column)] = seed_cell(done)
        elif stopped is not None and (halted := stopped_cell(group, stopped)) is not None:
            cells[(row, column)] = halted
        else:
            counts = group["state"].astype(str).value_counts()
            cells[(row, column)] = Cell(
                pending=describe_pending({s: int(c) for s, c in counts.items()}),
                task=str(group["task"].iloc[0]),
            )
    return cells


def stopped_cell(group: pd.DataFrame, stopped: pd.DataFrame) -> Cell | None:
    """The cell of a learning rate successive halving stopped: every seed still counted (not
    failed or cancelled) is stopped, and at least one has a test score at its last rung."""
    live = group[~group["state"].isin(GONE_STATES)]
    if live.empty or not (live["state"] == "stopped").all():
        return None
    at_rung = live[["job_id", "seed", "task"]].merge(stopped, on="job_id")
    at_rung = at_rung[at_rung["value"].notna()]
    if at_rung.empty:
        return None
    cell = seed_cell(at_rung.assign(epoch=0))
    # Seeds of a learning rate stop together; the highest rung is named should they not.
    return replace(cell, picks=(), stopped=int(at_rung["rung"].max()))


def scale(spec_percent: bool) -> tuple[float, int]:
    """(factor, decimals) for display: x100 with 2 decimals for percentages, else 4."""
    return (100.0, 2) if spec_percent else (1.0, 4)


def display_scores(data: Data, scoring: Scoring) -> pd.DataFrame:
    """`select.score_jobs` plus ``value``: the score in display units (MetricSpec.percent)."""
    scores = score_jobs(data, scoring)
    factors = {t: scale(scoring.spec(t).percent)[0] for t in scores["task"].unique()}
    return scores.assign(value=scores["score"].astype(float) * scores["task"].map(factors))
