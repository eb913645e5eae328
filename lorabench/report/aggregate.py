"""Reduce per-epoch evaluation rows to per-job scores and variant x learning-rate grids.

Conventions (decided here, relied on by `render` and `figures`):

* A job's score is the best epoch's value of the metric (the paper's rule), or the last epoch's
  with ``rule="last"``. Ties between epochs go to the earliest epoch.
* ``std`` is the sample standard deviation over seeds (``ddof=1``); it is NaN when a cell has a
  single seed, and such cells are shown without ``±``.
* Values stay raw fractions in the frames; ``percent=True`` only affects display (x100, 2 decimals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

JOB_COLUMNS = [
    "job_id",
    "sweep",
    "task",
    "model",
    "variant",
    "rank",
    "alpha",
    "lr",
    "seed",
    "group_hash",
]
SCORE_COLUMNS = [*JOB_COLUMNS, "score", "epoch"]
EVAL_COLUMNS = [*JOB_COLUMNS, "epoch", "metric", "value"]
JOBS_COLUMNS = [*JOB_COLUMNS, "state"]
RULES = ("best", "last")
# Order in which unfinished states are listed in a missing cell ("2 queued, 1 running").
PENDING_STATES = ("queued", "running", "failed", "cancelled")
MISSING = "—"


@dataclass(frozen=True)
class LrGrid:
    """Seed statistics per cell: rows are variants, columns learning rates (ascending).

    ``mean``/``std`` hold raw floats (NaN where no finished score), ``n`` the number of seeds
    with a score (int, 0 when missing), ``pending`` a short state summary for missing cells
    ("2 queued, 1 running") and "" elsewhere.
    """

    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    pending: pd.DataFrame
    task: str | None = None
    metric: str | None = None

    @property
    def variants(self) -> list[str]:
        return list(self.mean.index)

    @property
    def lrs(self) -> list[float]:
        return [float(lr) for lr in self.mean.columns]


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns: {', '.join(missing)}")


def job_scores(
    evals: pd.DataFrame, metric: str, rule: str = "best", *, higher_is_better: bool = True
) -> pd.DataFrame:
    """One row per job: the chosen epoch's value of ``metric`` as ``score`` plus that ``epoch``.

    ``rule="best"`` takes the max over epochs (min if ``higher_is_better`` is False), ties to
    the earliest epoch; ``rule="last"`` takes the highest epoch. An empty ``evals`` (nothing
    finished yet) gives an empty result; otherwise an unknown metric raises ValueError.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of: {', '.join(RULES)}")
    _require(evals, EVAL_COLUMNS, "evals")
    if evals.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    present = sorted(str(m) for m in evals["metric"].dropna().unique())
    if metric not in present:
        raise ValueError(f"unknown metric {metric!r}; metrics present: {', '.join(present)}")
    rows = evals.loc[(evals["metric"] == metric) & evals["value"].notna()]
    if rule == "best":
        order, ascending = ["job_id", "value", "epoch"], [True, not higher_is_better, True]
    else:
        order, ascending = ["job_id", "epoch"], [True, False]
    picked = rows.sort_values(order, ascending=ascending, kind="stable")
    picked = picked.drop_duplicates("job_id", keep="first").rename(columns={"value": "score"})
    return picked[SCORE_COLUMNS].sort_values("job_id").reset_index(drop=True)


def _describe_pending(counts: dict[str, int]) -> str:
    parts = [f"{counts[s]} {s}" for s in PENDING_STATES if counts.get(s)]
    if counts.get("done"):
        parts.append(f"{counts['done']} done without score")
    known = {*PENDING_STATES, "done"}
    parts += [f"{c} {s}" for s, c in sorted(counts.items()) if s not in known and c]
    return ", ".join(parts)


def lr_grid(
    evals: pd.DataFrame,
    jobs: pd.DataFrame,
    metric: str,
    rule: str = "best",
    *,
    higher_is_better: bool = True,
) -> LrGrid:
    """Aggregate job scores over seeds per (variant, lr) for a single task.

    Rows/columns are the union of what ``evals`` and ``jobs`` contain, so planned-but-unfinished
    cells appear with their pending summary. Other dimensions (rank, model, ...) are pooled:
    filter them beforehand.
    """
    _require(jobs, JOBS_COLUMNS, "jobs")
    scores = job_scores(evals, metric, rule, higher_is_better=higher_is_better)
    tasks = sorted({str(t) for t in scores["task"]} | {str(t) for t in jobs["task"]})
    if len(tasks) > 1:
        raise ValueError(
            f"the results span {len(tasks)} tasks ({', '.join(tasks)}); pass --task to pick one"
        )
    variants = sorted({str(v) for v in scores["variant"]} | {str(v) for v in jobs["variant"]})
    lrs = sorted({float(x) for x in scores["lr"]} | {float(x) for x in jobs["lr"]})
    index = pd.Index(variants, name="variant", dtype=object)
    columns = pd.Index(lrs, name="lr", dtype=float)

    keyed = scores.assign(
        variant=scores["variant"].astype(str),
        lr=scores["lr"].astype(float),
        score=scores["score"].astype(float),
    )
    stats = keyed.groupby(["variant", "lr"])["score"].agg(["mean", "std", "count"])

    def cells(column: str) -> pd.DataFrame:
        if stats.empty:
            return pd.DataFrame(math.nan, index=index, columns=columns)
        return stats[column].unstack("lr").reindex(index=index, columns=columns).astype(float)

    n = cells("count").fillna(0).astype(int)
    pending = pd.DataFrame("", index=index, columns=columns, dtype=object)
    state_counts = (
        jobs.assign(variant=jobs["variant"].astype(str), lr=jobs["lr"].astype(float))
        .groupby(["variant", "lr", "state"])
        .size()
    )
    for (variant, lr), group in state_counts.groupby(level=["variant", "lr"]):
        if n.at[variant, lr] == 0:
            counts = {str(state): int(c) for (_, _, state), c in group.items()}
            pending.at[variant, lr] = _describe_pending(counts)
    return LrGrid(
        mean=cells("mean"),
        std=cells("std"),
        n=n,
        pending=pending,
        task=tasks[0] if tasks else None,
        metric=metric,
    )


def display_precision(percent: bool) -> tuple[float, int]:
    """(scale, decimals) used for display: x100 with 2 decimals for percentages, else 4."""
    return (100.0, 2) if percent else (1.0, 4)


def format_cell(mean: float, std: float, n: int, pending: str = "", *, percent: bool) -> str:
    """'85.31 ± 0.42'; '85.31' with one seed (or NaN std); '— (2 queued)' / '—' when missing."""
    if not n or pd.isna(mean):
        return f"{MISSING} ({pending})" if pending else MISSING
    scale, decimals = display_precision(percent)
    text = f"{mean * scale:.{decimals}f}"
    if n > 1 and not pd.isna(std):
        text += f" ± {std * scale:.{decimals}f}"
    return text


def format_lr(lr: float) -> str:
    """Shortest scientific notation that still reads back as ``lr``: 1e-04, 2.5e-04."""
    for digits in range(7):
        text = f"{lr:.{digits}e}"
        if math.isclose(float(text), lr, rel_tol=1e-9, abs_tol=0.0):
            return text
    return f"{lr:.6e}"
