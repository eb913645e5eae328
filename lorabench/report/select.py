"""The selection rules: which epoch is a job's score, which learning rate a configuration's best.

* ``select="test"``, the paper's rule: the best epoch and the best learning rate are read on the
  split that is reported (optimistic: the choice has seen the examples it is scored on).
* ``select="val"``: a job's epoch is the best on the held-out ``select`` split, by the task's
  ``select_metric`` (the reported metric when None) in that metric's direction, and the test
  score of that epoch is reported; a configuration's learning rate is the one with the best mean
  select score over its seeds.
* A job without select rows (a database from before the split, or ``select_split`` off) is
  scored by the test rule and flagged ``fallback``; a configuration with such a job chooses its
  learning rate by the test rule. The tables say so in a note.
* ``rule="last"`` takes the last epoch under either rule (learning rates still follow ``select``).

Ties go to the earliest epoch and the smallest learning rate; NaN (NULL) values never win.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lorabench.catalog.task import MetricSpec, get_task_info
from lorabench.report.load import Data

RULES = ("best", "last")
SELECTS = ("val", "test")
SCORE_COLUMNS = ["job_id", "task", "metric", "epoch", "score", "select_score", "by", "fallback"]


@dataclass(frozen=True)
class Scoring:
    """How a job's score is read: the metric (None: each task's primary), the epoch rule and
    the selection rule."""

    metric: str | None = None
    rule: str = "best"
    select: str = "val"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"--rule {self.rule!r}: choose {' or '.join(RULES)}")
        if self.select not in SELECTS:
            raise ValueError(f"--select {self.select!r}: choose {' or '.join(SELECTS)}")

    def test_metric(self, task: str) -> str:
        return self.metric or get_task_info(task).primary_metric

    def select_metric(self, task: str) -> str:
        return get_task_info(task).select_metric or self.test_metric(task)

    def spec(self, task: str, metric: str | None = None) -> MetricSpec:
        return get_task_info(task).metric_spec(metric or self.test_metric(task))

    def describe(self) -> str:
        if self.rule == "last":
            return "last epoch"
        return "best epoch on the select split" if self.select == "val" else "best epoch"


def _best(rows: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """Per job the row with the best value (ties: earliest epoch)."""
    ordered = rows.sort_values(
        ["job_id", "value", "epoch"], ascending=[True, not higher_is_better, True], kind="stable"
    )
    return ordered.drop_duplicates("job_id", keep="first")


def _last(rows: pd.DataFrame) -> pd.DataFrame:
    ordered = rows.sort_values(["job_id", "epoch"], ascending=[True, False], kind="stable")
    return ordered.drop_duplicates("job_id", keep="first")


def score_jobs(data: Data, scoring: Scoring) -> pd.DataFrame:
    """One row per finished job with a score: SCORE_COLUMNS, raw values (not x100).

    ``by`` is "val", "test" or "last": what chose the epoch; ``fallback`` is True where the val
    rule was asked for but the job has no select rows. An unknown ``scoring.metric`` (absent
    from every task's test rows) is a ValueError listing the metrics present.
    """
    tasks = data.jobs.set_index("job_id")["task"]
    frames, found = [], scoring.metric is None
    for task in sorted(data.jobs["task"].dropna().astype(str).unique()):
        ids = set(tasks[tasks == task].index)
        metric, select_metric = scoring.test_metric(task), scoring.select_metric(task)
        test = data.evals[data.evals["job_id"].isin(ids) & (data.evals["metric"] == metric)]
        test = test[test["value"].notna()]
        if test.empty:
            continue
        found = True
        held = data.selects[
            data.selects["job_id"].isin(ids) & (data.selects["metric"] == select_metric)
        ]
        held = held[held["value"].notna()]
        frames.append(_task_scores(task, metric, test, held, scoring))
    if not found and not data.evals.empty:
        present = ", ".join(sorted(data.evals["metric"].astype(str).unique()))
        raise ValueError(f"unknown metric {scoring.metric!r}; metrics present: {present}")
    if not frames:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values("job_id").reset_index(drop=True)


def _task_scores(
    task: str, metric: str, test: pd.DataFrame, held: pd.DataFrame, scoring: Scoring
) -> pd.DataFrame:
    higher = scoring.spec(task).higher_is_better
    select_higher = scoring.spec(task, scoring.select_metric(task)).higher_is_better
    has_select = set(held["job_id"])
    if scoring.rule == "last":
        picked = _last(test).assign(by="last")
    elif scoring.select == "test":
        picked = _best(test, higher).assign(by="test")
    else:
        chosen = _best(held, select_higher)[["job_id", "epoch"]]
        by_val = chosen.merge(test, on=["job_id", "epoch"], how="inner").assign(by="val")
        by_test = _best(test[~test["job_id"].isin(has_select)], higher).assign(by="test")
        picked = pd.concat([by_val, by_test], ignore_index=True)
    select_scores = held[["job_id", "epoch", "value"]].rename(columns={"value": "select_score"})
    picked = picked.merge(select_scores, on=["job_id", "epoch"], how="left")
    picked = picked.rename(columns={"value": "score"}).assign(task=task, metric=metric)
    picked["fallback"] = (scoring.select == "val") & ~picked["job_id"].isin(has_select)
    return picked[SCORE_COLUMNS]


def choose_lrs(
    scored: pd.DataFrame, *, select: str, higher_is_better: bool, select_higher_is_better: bool
) -> pd.DataFrame:
    """Each row's (configuration's) learning rate under the ``select`` rule.

    ``scored``: one line per job with ``row``, ``lr``, ``score``, ``select_score``,
    ``fallback``. Returns, indexed by row, ``lr`` and ``by`` ("val": best mean select score over
    seeds; "test": best mean test score, the paper's rule and the fallback of a row with a job
    lacking select rows).
    """
    out = {}
    for row, jobs in scored.groupby("row", sort=True):
        means = jobs.groupby("lr")[["score", "select_score"]].mean().sort_index()
        use_val = (
            select == "val" and not jobs["fallback"].any() and means["select_score"].notna().all()
        )
        column, higher = ("select_score", select_higher_is_better) if use_val else (
            "score", higher_is_better)  # fmt: skip
        values = means[column].dropna()
        if values.empty:
            continue
        best = values.max() if higher else values.min()
        out[row] = {
            "lr": float(values[values == best].index[0]),
            "by": "val" if use_val else "test",
        }
    return pd.DataFrame.from_dict(out, orient="index", columns=["lr", "by"])
