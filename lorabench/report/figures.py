"""The paper's figures, from the same cells, labels and selection rules as the tables.

* ``lr-sweep`` (Fig. 7/9/10): a panel per task, metric vs learning rate (log x), a line per
  configuration (the lr table's rows), ± seed std, a ring at the configuration's chosen lr;
  a learning rate successive halving stopped is a hollow marker off the line (its score at the
  rung where it stopped is not a final score).
* ``sensitivity`` (Fig. 6): a panel per axis varied around the base point of the sensitivity
  table, a line per configuration (its labels), the base value dotted.
* ``overhead`` (Fig. 8): training time and peak memory per configuration, relative to LoRA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lorabench.catalog.task import get_task_info
from lorabench.report.cells import display_scores
from lorabench.report.configs import NothingToReport, format_lr
from lorabench.report.load import Data
from lorabench.report.plot import (
    MAX_COLUMNS,
    PANEL_SIZE,
    fixed_ticks,
    legend_outside,
    legend_width,
    styles,
)  # fmt: skip
from lorabench.report.registry import register_figure
from lorabench.report.select import Scoring
from lorabench.report.stopped import stopped_scores
from lorabench.report.tables.lr import LrBlock, lr_block
from lorabench.report.tables.overhead import REFERENCE, overhead_labels
from lorabench.report.tables.sensitivity import SENSITIVITY_AXES, labels, panels

FAMILY_ORDER = ("nlu", "nlg", "ic")
AXIS_TITLES = {  # Fig. 6's panels: (axis label, log x)
    "train_size": ("training data volume (samples)", True),
    "batch_size": ("batch size", True),
    "dropout": ("dropout", False),
    "lr": ("learning rate", True),
}
TIME_METRICS = ("train_seconds", "step_time_s")  # first one present wins
MEMORY_METRIC = "peak_memory_mb"
STOPPED_LABEL = "stopped by halving (score at its last rung)"


def _require(data: Data) -> None:
    if data.jobs.empty:
        raise NothingToReport("no jobs in the database to draw; plan and run a sweep first")


# --------------------------------------------------------------------------- lr sweep


@register_figure("lr-sweep")
def lr_sweep(data: Data, scoring: Scoring) -> Figure:
    _require(data)
    scores = display_scores(data, scoring)
    stopped = stopped_scores(data, scoring)
    tasks = sorted(data.jobs["task"].astype(str).unique())
    blocks = {task: lr_block(data, scoring, task, scores, stopped) for task in tasks}
    return lr_sweep_figure(blocks, select=scoring.select)


def lr_sweep_figure(blocks: Mapping[str, LrBlock], *, select: str = "val") -> Figure:
    """A panel per task, each family (nlu, nlg, ic) starting a row and sharing y within it."""
    if not blocks:
        raise ValueError("no task to plot")
    groups: dict[str, list[str]] = {}
    for task in blocks:
        groups.setdefault(get_task_info(task).family, []).append(task)
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    groups = dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))
    ncols = min(max(len(g) for g in groups.values()), MAX_COLUMNS)
    rows_per_group = [math.ceil(len(g) / ncols) for g in groups.values()]
    lines = sorted({row for b in blocks.values() for row in b.block.rows})
    style = styles(lines)
    halted = any(c.stopped is not None for b in blocks.values() for c in b.block.cells.values())
    marks = [f"best lr ({select} rule)", *[STOPPED_LABEL] * halted]
    width = PANEL_SIZE[0] * ncols + 0.8 + legend_width([*lines, *marks])
    fig = Figure(figsize=(width, PANEL_SIZE[1] * sum(rows_per_group) + 0.6))
    spec = fig.add_gridspec(sum(rows_per_group), ncols)
    metrics = {b.metric for b in blocks.values()}
    metric = metrics.pop() if len(metrics) == 1 else "score"
    percent = all(b.percent for b in blocks.values())
    ylabel = f"{metric} (%)" if percent else metric
    handles: dict[str, Line2D] = {}
    top = 0
    for (family, group), group_rows in zip(groups.items(), rows_per_group, strict=True):
        first = None
        for k, task in enumerate(group):
            ax = fig.add_subplot(spec[top + k // ncols, k % ncols], sharey=first)
            first = first or ax
            _lr_panel(ax, blocks[task], style, handles)
            ax.set_title(f"{task} ({blocks[task].metric})")
            ax.set_xlabel("learning rate")
            if k % ncols == 0:
                ax.set_ylabel(f"{family.upper()}: {ylabel}")
            else:
                ax.tick_params(labelleft=False)
        top += group_rows
    shown = [v for v in lines if v in handles]
    ring = Line2D([], [], marker="o", markersize=10, markerfacecolor="none", color="0.3",
                  linestyle="none")  # fmt: skip
    hollow = Line2D([], [], marker="o", markersize=5, markerfacecolor="none", color="0.3",
                    linestyle="none")  # fmt: skip
    entries = [*(handles[v] for v in shown), ring, *[hollow] * halted] if shown else []
    right = legend_outside(fig, fig.axes[0], entries, [*shown, *marks],
                           "configuration")  # fmt: skip
    fig.suptitle(f"{metric} vs learning rate")
    fig.tight_layout(rect=(0, 0, right, 1))
    return fig


def _lr_panel(ax, lr: LrBlock, style, handles: dict[str, Line2D]) -> None:  # noqa: ANN001
    for row in lr.block.rows:
        cells = [(x, lr.block.cell(row, format_lr(x))) for x in lr.lrs]
        cells = [(x, c) for x, c in cells if c.scored]
        x = [v for v, _ in cells]
        (line,) = ax.plot(x, [c.mean for _, c in cells], label=row, linewidth=1.5,
                          markersize=5, **style[row])  # fmt: skip
        handles.setdefault(row, line)
        spread = [(v, c) for v, c in cells if c.n > 1 and not pd.isna(c.std)]
        if spread:
            ax.errorbar([v for v, _ in spread], [c.mean for _, c in spread],
                        yerr=[c.std for _, c in spread], fmt="none", ecolor=style[row]["color"],
                        elinewidth=1.2, capsize=0)  # fmt: skip
        _stopped_points(ax, lr, row, style[row])
        if row in lr.chosen.index:
            chosen = float(lr.chosen.at[row, "lr"])
            cell = lr.block.cell(row, format_lr(chosen))
            ring = {"marker": "o", "markersize": 10, "markerfacecolor": "none"}
            ax.plot([chosen], [cell.mean], markeredgecolor=style[row]["color"], linestyle="none",
                    label="_chosen", **ring)  # fmt: skip
    ax.set_xscale("log")
    fixed_ticks(ax, lr.lrs, format_lr)
    ax.grid(True, alpha=0.3)


def _stopped_points(ax, lr: LrBlock, row: str, style: dict) -> None:  # noqa: ANN001
    """The row's stopped learning rates: hollow markers in its colour, off its line, which
    joins final scores only."""
    cells = [(x, lr.block.cell(row, format_lr(x))) for x in lr.lrs]
    points = [(x, c.mean) for x, c in cells if c.stopped is not None]
    if points:
        ax.plot([x for x, _ in points], [y for _, y in points], linestyle="none", markersize=5,
                markerfacecolor="none", label="_stopped", **style)  # fmt: skip


# --------------------------------------------------------------------------- sensitivity


@register_figure("sensitivity")
def sensitivity_figure(data: Data, scoring: Scoring) -> Figure:
    """Fig. 6 for one task: a panel per axis of `tables.sensitivity.panels`, mean over seeds."""
    _require(data)
    tasks = sorted(data.jobs["task"].astype(str).unique())
    if len(tasks) > 1:
        raise ValueError(f"the jobs span {len(tasks)} tasks ({', '.join(tasks)}); pick a task "
                         "with --task")  # fmt: skip
    task = tasks[0]
    jobs = data.jobs
    base, found = panels(jobs)
    if not found:
        raise ValueError(f"no hyperparameter of {', '.join(SENSITIVITY_AXES)} varies around a "
                         f"base config in task {task!r}")  # fmt: skip
    line_of = labels(jobs)
    scores = display_scores(data, scoring).set_index("job_id")["value"]
    spec = scoring.spec(task)
    metric = scoring.test_metric(task)
    style = styles(line_of)
    ncols = min(len(found), 2)  # 2 x 2 for Fig. 6's four panels: legible on a page
    nrows = math.ceil(len(found) / ncols)
    width = PANEL_SIZE[0] * ncols + 0.8 + legend_width(list(line_of))
    fig = Figure(figsize=(width, PANEL_SIZE[1] * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for spare in axes[len(found) :]:
        fig.delaxes(spare)
    handles: dict[str, Line2D] = {}
    for i, (ax, (axis, members)) in enumerate(zip(axes, found, strict=False)):
        title, log = AXIS_TITLES[axis]
        frame = pd.DataFrame(
            {"line": line_of[members.index], "x": members[axis],
             "y": members["job_id"].map(scores)}
        ).dropna(subset=["x", "y"])  # fmt: skip
        for line, points in frame.groupby("line", sort=True):
            means = points.groupby("x")["y"].mean().sort_index()
            (drawn,) = ax.plot([float(v) for v in means.index], means.to_numpy(), label=line,
                               linewidth=1.5, markersize=5, **style[line])  # fmt: skip
            handles.setdefault(line, drawn)
        if log:
            ax.set_xscale("log")
        values = sorted({float(v) for v in members[axis].dropna()})
        fixed_ticks(ax, values, format_lr if axis == "lr" else _format_value)
        if base.get(axis) is not None:
            ax.axvline(float(base[axis]), color="0.6", linestyle=":", linewidth=1)
        ax.set_title(f"({chr(ord('a') + i)}) {title}")
        ax.set_xlabel(title)
        if i % ncols == 0:
            ax.set_ylabel(f"{metric} (%)" if spec.percent else metric)
        ax.grid(True, alpha=0.3)
    shown = sorted(handles)
    right = legend_outside(fig, fig.axes[0], [handles[v] for v in shown], shown,
                           "configuration\n(dotted: base)")  # fmt: skip
    fig.suptitle(f"{task}: {metric} when one hyperparameter varies (mean over seeds)")
    fig.tight_layout(rect=(0, 0, right, 1))
    return fig


def _format_value(value: float) -> str:
    if value >= 1000 and value % 1000 == 0:
        return f"{value / 1000:g}k"
    return f"{value:g}"


# --------------------------------------------------------------------------- overhead


@register_figure("overhead")
def overhead_figure(data: Data, scoring: Scoring | None = None) -> Figure:
    """Fig. 8: training time and peak memory per configuration (the overhead table's labels,
    plus task and model where they vary), mean over seeds; bars in planned order, each
    annotated with its ratio to plain LoRA (dashed). Time is ``train_seconds`` when any job has
    it, else ``step_time_s``; memory ``peak_memory_mb`` in GiB."""
    _require(data)
    summary = data.summary
    present = set(summary["metric"].astype(str))
    time_metric = next((m for m in TIME_METRICS if m in present), None)
    if time_metric is None or MEMORY_METRIC not in present:
        wanted = f"one of {', '.join(TIME_METRICS)} and {MEMORY_METRIC}"
        found = ", ".join(sorted(present)) or "none (no finished job?)"
        raise ValueError(f"summary metrics lack {wanted}; present: {found}")
    jobs = data.jobs.assign(config=overhead_labels(data.jobs, spanning=True))
    wide = (
        summary[summary["metric"].isin([time_metric, MEMORY_METRIC])]
        .pivot_table(index="job_id", columns="metric", values="value", aggfunc="first")
        .reindex(columns=[time_metric, MEMORY_METRIC])
    )
    merged = jobs.merge(wide, left_on="job_id", right_index=True, how="inner")
    order = merged.groupby("config")["job_id"].min().sort_values().index
    stats = merged.groupby("config")[[time_metric, MEMORY_METRIC]].mean().reindex(order)
    variant_of = merged.groupby("config")["variant"].first().reindex(order)
    colours = styles(variant_of.astype(str))
    height = max(3.0, 0.32 * len(order) + 1.3)
    fig = Figure(figsize=(12.0, height))
    axes = fig.subplots(1, 2, sharey=True)
    unit = 1.0 if time_metric == "train_seconds" else 1000.0
    columns = (
        (time_metric, f"training time ({'s' if unit == 1 else 'ms/step'})", unit),
        (MEMORY_METRIC, "peak GPU memory (GiB)", 1 / 1024),
    )
    y = list(range(len(order)))
    for ax, (column, xlabel, factor) in zip(axes, columns, strict=True):
        values = (stats[column] * factor).to_numpy()
        ax.barh(y, values, color=[colours[str(variant_of[c])]["color"] for c in order],
                edgecolor="0.2", linewidth=0.5)  # fmt: skip
        ref = float(stats.loc[REFERENCE, column] * factor) if REFERENCE in order else math.nan
        if not math.isnan(ref) and ref > 0:
            ax.axvline(ref, color="0.25", linestyle="--", linewidth=1, label=REFERENCE)
            for yi, value in zip(y, values, strict=True):
                if not math.isnan(value):
                    ax.text(value, yi, f" {value / ref:.2f}×", va="center", fontsize="x-small")
        finite = [v for v in values if not math.isnan(v)]
        ax.set_xlim(0, max(finite, default=1) * 1.18)
        ax.set_xlabel(xlabel)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, list(order))
    axes[0].invert_yaxis()  # planned order reads top to bottom
    axes[0].set_title("training time")
    axes[1].set_title("peak memory")
    note = f"ratios relative to {REFERENCE} (dashed)"
    if any("†" in c for c in order):
        note += "; † = adapter activation checkpointing"
    fig.suptitle(f"Computational and memory overhead\n{note}", fontsize="medium")
    fig.tight_layout()
    return fig
