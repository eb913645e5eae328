"""Hyperparameter sensitivity (Fig. 6 as a table): per task, one block per varied axis.

The base point is the most frequent value of each axis among the task's jobs (ties: the
smallest; `configs.base_point`); a job belongs to axis X when every other axis is at its base
value, so the base job appears on every axis. Any other field that varies (rank, model, ...)
labels the rows, never pooled. The sensitivity figure uses the same `panels` and labels.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from lorabench.report.blocks import require_jobs, score_block, score_notes
from lorabench.report.cells import ReportTable, display_scores
from lorabench.report.compare import mark_best, tie_notes
from lorabench.report.configs import NothingToReport, at_value, base_point, format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring
from lorabench.report.stopped import stopped_notes, stopped_scores

SENSITIVITY_AXES = ("train_size", "batch_size", "dropout", "lr")


def _value(value: Any) -> Any:
    return None if value is None or pd.isna(value) else float(value)


def panels(jobs: pd.DataFrame) -> tuple[dict[str, Any], list[tuple[str, pd.DataFrame]]]:
    """(base point, [(axis, its member jobs)]) of one task's jobs, for each axis with two or more
    values (unset counting as one) among its members."""
    axes = [a for a in SENSITIVITY_AXES if a in jobs.columns]
    base = base_point(jobs, axes)
    found = []
    for axis in axes:
        on_axis = pd.Series(True, index=jobs.index)
        for other in axes:
            if other != axis:
                on_axis &= at_value(jobs[other], base[other])
        members = jobs[on_axis]
        if len({_value(v) for v in members[axis]}) >= 2:
            found.append((axis, members))
    return base, found


def labels(jobs: pd.DataFrame) -> pd.Series:
    """Row (and line) labels: the same over all panels of a task."""
    return row_labels(jobs, ("task", *SENSITIVITY_AXES))


def axis_label(axis: str, value: Any) -> str:
    value = _value(value)
    if value is None:
        return "default"
    return format_lr(value) if axis == "lr" else f"{value:g}"


@register_table(
    "sensitivity", no_paper="the paper's sensitivity results are a plot (Fig. 6), not numbers"
)
def sensitivity_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    require_jobs(data, "sensitivity")
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    blocks, untested = [], Counter()
    for task in sorted(data.jobs["task"].unique()):
        jobs = data.jobs[data.jobs["task"] == task]
        base, found = panels(jobs)
        rows = labels(jobs)
        base_text = ", ".join(f"{a}={axis_label(a, base.get(a))}" for a in SENSITIVITY_AXES)
        for axis, members in found:
            values = sorted({v for v in map(_value, members[axis]) if v is not None})
            order = ["default"] * any(_value(v) is None for v in members[axis])
            order += [axis_label(axis, v) for v in values]
            columns = members[axis].map(lambda v, a=axis: axis_label(a, v))
            title = f"{task}: {scoring.test_metric(task)} by {axis} (base: {base_text})"
            block = score_block(title, members, rows[members.index], columns, scores, scoring,
                                order=order, stopped=stopped)  # fmt: skip
            untested += mark_best(block, data, scoring)
            blocks.append(block)
    if not blocks:
        raise NothingToReport(
            "no sensitivity axis varies: need jobs differing from the base point in "
            f"one of {', '.join(SENSITIVITY_AXES)}"
        )
    notes = [
        "Base point: the most frequent value of each axis among the task's jobs (ties: the "
        "smallest); a column holds the jobs that differ from it in that axis only.",
        *score_notes(scoring, scores),
        *tie_notes(untested),
        *stopped_notes(blocks),
    ]
    return ReportTable("sensitivity", "Hyperparameter sensitivity (Fig. 6)", blocks, notes)
