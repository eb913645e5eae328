"""The paper's figures, drawn without pyplot (no global state).

* ``lr_sweep_figure`` / ``lr_sweep_from_frames``: Fig. 7/9/10, metric vs learning rate per task.
* ``sensitivity_figure``: Fig. 6, one panel per hyperparameter varied around a base config.
* ``overhead_figure``: Fig. 8, training time and peak memory per variant, relative to LoRA.

The frame-taking functions accept the ``(jobs, evals)`` of ``load.load_frames``. Sensitivity and
overhead need more than those frames carry (``train_size``, ``batch_size``, ``dropout``,
``adapter_checkpointing``, ``variant_params`` and the summary metrics): ``load_figure_frames``
reads them too. Each variant keeps one colour (and marker) in every panel of a figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from lorabench.report.aggregate import LrGrid, format_lr, job_scores, lr_grid

MAX_COLUMNS = 4
PANEL_SIZE = (4.2, 3.4)  # inches per panel
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FAMILY_ORDER = ("nlu", "nlg", "ic")
# Job config fields read by load_figure_frames beyond load_frames' columns.
# Fig. 6's panels, in the paper's order: (jobs column, axis label, log x).
SENSITIVITY_AXES = (
    ("train_size", "training data volume (samples)", True),
    ("batch_size", "batch size", True),
    ("dropout", "dropout", False),
    ("lr", "learning rate", True),
)
# Held at their most common value in every sensitivity panel, so e.g. a rank-16 job never
# lands on the rank-8 curve.
SENSITIVITY_FIXED = ("model", "rank", "alpha")
TIME_METRICS = ("train_seconds", "step_time_s")  # first one present wins
MEMORY_METRIC = "peak_memory_mb"
REFERENCE_VARIANT = "lora"


def variant_styles(variants: Iterable[str]) -> dict[str, dict[str, str]]:
    """Colour and marker per variant, by sorted name, so every panel and figure agrees."""
    names = sorted({str(v) for v in variants})
    palette = [f"C{i}" for i in range(10)]
    if len(names) > 10:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        palette = [cmap(i) for i in range(20)]
    return {
        v: {"color": palette[i % len(palette)], "marker": MARKERS[i % len(MARKERS)]}
        for i, v in enumerate(names)
    }


def _legend_outside(fig: Figure, owner, handles: Sequence, labels: Sequence[str], title: str):
    """Legend right of all panels; it belongs to ``owner`` (an Axes) but takes no layout space.

    The caller widens the figure by ``_legend_width(labels)`` and passes the matching ``rect`` to
    tight_layout; save_figure adds axes legends to the saved bounding box.
    """
    right = 1 - _legend_width(labels) / fig.get_figwidth()
    if not handles:  # nothing drawn yet (no finished job): empty panels, no legend
        return None, right
    legend = owner.legend(
        handles=handles,
        labels=labels,
        title=title,
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(right + 0.01, 0.5),
        bbox_transform=fig.transFigure,
        frameon=False,
    )
    legend.set_in_layout(False)
    return legend, right


def _legend_width(labels: Sequence[str]) -> float:
    """Inches a one-column legend needs (estimated from the longest label, no renderer)."""
    longest = max((len(str(label)) for label in labels), default=0)
    return 0.7 + 0.075 * max(longest, 7)


def lr_sweep_figure(
    grid_by_task: Mapping[str, LrGrid],
    *,
    metric: str,
    percent: bool,
    families: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """One Axes per task: mean metric vs learning rate (log x), one line per variant.

    Error bars show the seed std where it exists (cells with >= 2 seeds); cells without a
    finished score are skipped. Variants keep the same colour/marker in every panel.
    Without ``families`` all panels share one y axis; with ``families`` (task -> "nlu" | "nlg" |
    "ic") each family starts a new row and shares y only within itself, as in the paper's Fig.
    7/9/10. ``titles`` overrides a panel's title (default: the task name). The legend sits right
    of the panels and belongs to the first Axes.
    """
    if not grid_by_task:
        raise ValueError("no task grids to plot")
    tasks = list(grid_by_task)
    if families is None:
        groups = {"": tasks}
    else:
        groups = {}
        for task in tasks:
            groups.setdefault(str(families.get(task, "other")), []).append(task)
        rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
        groups = dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))
    ncols = min(max(len(g) for g in groups.values()), MAX_COLUMNS)
    rows_per_group = [math.ceil(len(g) / ncols) for g in groups.values()]
    nrows = sum(rows_per_group)

    variants = sorted({str(v) for grid in grid_by_task.values() for v in grid.variants})
    styles = variant_styles(variants)
    width = PANEL_SIZE[0] * ncols + 0.8 + _legend_width(variants)
    fig = Figure(figsize=(width, PANEL_SIZE[1] * nrows + 0.6))
    spec = fig.add_gridspec(nrows, ncols)
    scale = 100.0 if percent else 1.0
    ylabel = f"{metric} (%)" if percent else metric
    handles: dict[str, Line2D] = {}

    row = 0
    for (family, group), group_rows in zip(groups.items(), rows_per_group, strict=True):
        family_first = None
        for k, task in enumerate(group):
            ax = fig.add_subplot(spec[row + k // ncols, k % ncols], sharey=family_first)
            family_first = family_first or ax
            _draw_lr_panel(ax, grid_by_task[task], styles, scale, handles)
            ax.set_title(str(titles.get(task, task)) if titles else str(task))
            ax.set_xlabel("learning rate")
            if k % ncols == 0:
                ax.set_ylabel(f"{family.upper()}: {ylabel}" if family else ylabel)
            else:
                ax.tick_params(labelleft=False)
        row += group_rows

    shown = [v for v in variants if v in handles]
    _, right = _legend_outside(fig, fig.axes[0], [handles[v] for v in shown], shown, "variant")
    fig.suptitle(f"{metric} vs learning rate")
    fig.tight_layout(rect=(0, 0, right, 1))
    return fig


def _draw_lr_panel(ax, grid: LrGrid, styles, scale: float, handles: dict[str, Line2D]) -> None:
    for variant in grid.variants:
        mean = grid.mean.loc[variant]
        std = grid.std.loc[variant]
        ok = mean.notna().to_numpy()
        x = [float(lr) for lr in mean.index[ok]]
        y = (mean[ok] * scale).to_numpy()
        (line,) = ax.plot(x, y, label=variant, linewidth=1.5, markersize=5, **styles[variant])
        handles.setdefault(variant, line)
        has_err = (ok & std.notna().to_numpy()).nonzero()[0]
        if len(has_err):
            ax.errorbar(
                [float(mean.index[j]) for j in has_err],
                (mean.iloc[has_err] * scale).to_numpy(),
                yerr=(std.iloc[has_err] * scale).to_numpy(),
                fmt="none",
                ecolor=styles[variant]["color"],
                elinewidth=1.2,
                capsize=0,
            )
    ax.set_xscale("log")
    _fixed_ticks(ax, grid.lrs, format_lr)
    ax.grid(True, alpha=0.3)


def _fixed_ticks(ax, values: Sequence[float], fmt) -> None:
    """Ticks exactly at the swept values (log axes otherwise label only powers of ten)."""
    if not values:
        return
    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.xaxis.set_major_formatter(FixedFormatter([fmt(v) for v in values]))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(values) > 4:
        ax.tick_params(axis="x", labelrotation=45)


def _is_fraction(values: pd.Series) -> bool:
    # Correlations (CoLA's MCC, STS-B's Pearson) may dip below 0; the paper shows them x100 too.
    return bool(len(values)) and bool(values.between(-1, 1).all())


def lr_sweep_from_frames(
    jobs: pd.DataFrame, evals: pd.DataFrame, *, rule: str = "best", metric: str | None = None
) -> Figure:
    """Fig. 7/9/10 from ``load_frames``: a panel per task, y shared within each task family.

    Each task is scored by ``metric`` or else its primary metric (TaskInfo), best epoch by
    default, mean +- std over seeds; panels are titled "task (metric)". Values are shown x100
    when every plotted value lies in [-1, 1]. Other settings (rank, model) are pooled.
    """
    from lorabench.tasks import get_task_info

    if jobs.empty:
        raise ValueError("no jobs to plot")
    grids, families, titles, used = {}, {}, {}, set()
    percent = True
    for task in sorted(jobs["task"].astype(str).unique()):
        info = get_task_info(task)
        task_metric = metric or info.primary_metric
        task_evals = evals[evals["task"] == task]
        grids[task] = lr_grid(task_evals, jobs[jobs["task"] == task], task_metric, rule=rule)
        families[task], titles[task] = info.family, f"{task} ({task_metric})"
        used.add(task_metric)
        chosen = task_evals.loc[task_evals["metric"] == task_metric, "value"]
        percent = percent and (chosen.empty or _is_fraction(chosen))
    label = used.pop() if len(used) == 1 else "score"
    return lr_sweep_figure(grids, metric=label, percent=percent, families=families, titles=titles)


def _mode(values: pd.Series):
    """Most common value; ties go to the smallest so the base is deterministic."""
    counts = values.value_counts(dropna=False)
    top = counts[counts == counts.max()].index
    return sorted(top, key=lambda v: (pd.isna(v), v if not pd.isna(v) else 0))[0]


def _same(column: pd.Series, value) -> pd.Series:
    if pd.isna(value):
        return column.isna()
    return column == value


def sensitivity_figure(
    jobs: pd.DataFrame,
    evals: pd.DataFrame,
    *,
    task: str | None = None,
    metric: str | None = None,
    rule: str = "best",
    percent: bool | None = None,
) -> Figure:
    """Fig. 6: one panel per varied hyperparameter, y = mean over seeds of the job scores.

    ``jobs`` needs the columns of ``SENSITIVITY_AXES`` that should get a panel (``load_frames``
    has only ``lr``; ``load_figure_frames`` has all four). Panel membership, per task: the base
    value of each axis field and of ``SENSITIVITY_FIXED`` (model, rank, alpha) is its most common
    value among the task's jobs (ties: smallest). A job belongs to the panel of field F when it
    equals the base in every one of those fields except F; the base job itself (equal in all)
    belongs to every panel, like the paper's shared base point. A panel is drawn for each axis
    field that then has at least two distinct values; its x axis is log for data volume, batch
    size and learning rate. Scores: the best (or ``rule="last"``) epoch of ``metric`` (default:
    the task's primary metric); percent defaults to "all values in [-1, 1]".
    """
    if jobs.empty:
        raise ValueError("no jobs to plot")
    tasks = sorted(jobs["task"].astype(str).unique())
    if task is None and len(tasks) > 1:
        raise ValueError(f"the jobs span {len(tasks)} tasks ({', '.join(tasks)}); pick a task")
    task = task or tasks[0]
    jobs = jobs[jobs["task"] == task]
    evals = evals[evals["task"] == task]
    if jobs.empty:
        raise ValueError(f"no jobs for task {task!r}")
    if metric is None:
        from lorabench.tasks import get_task_info

        metric = get_task_info(task).primary_metric
    axes_present = [a for a in SENSITIVITY_AXES if a[0] in jobs.columns]
    fixed = [f for f in SENSITIVITY_FIXED if f in jobs.columns]
    base = {f: _mode(jobs[f]) for f in [a[0] for a in axes_present] + fixed}
    at_base = pd.DataFrame({f: _same(jobs[f], v) for f, v in base.items()}, index=jobs.index)

    panels = []
    for field, label, log in axes_present:
        others = [f for f in base if f != field]
        members = jobs[at_base[others].all(axis=1)] if others else jobs
        if members[field].dropna().nunique() >= 2:
            panels.append((field, label, log, members))
    if not panels:
        raise ValueError(
            f"no hyperparameter of {', '.join(a[0] for a in SENSITIVITY_AXES)} varies around a "
            f"base config in task {task!r}"
        )

    scores = job_scores(evals, metric, rule) if not evals.empty else pd.DataFrame()
    score_by_job = (
        scores.set_index("job_id")["score"].astype(float) if len(scores) else pd.Series(dtype=float)
    )
    if percent is None:
        percent = _is_fraction(score_by_job) if len(score_by_job) else True
    scale = 100.0 if percent else 1.0
    variants = sorted(jobs["variant"].astype(str).unique())
    styles = variant_styles(variants)
    ncols = min(len(panels), 2)  # 2 x 2 for Fig. 6's four panels: legible on a page
    nrows = math.ceil(len(panels) / ncols)
    width = PANEL_SIZE[0] * ncols + 0.8 + _legend_width(variants)
    fig = Figure(figsize=(width, PANEL_SIZE[1] * nrows + 0.6))
    grid_axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for spare in grid_axes[len(panels) :]:
        fig.delaxes(spare)
    handles: dict[str, Line2D] = {}
    for i, (ax, (field, label, log, members)) in enumerate(zip(grid_axes, panels, strict=False)):
        scored = members.assign(score=members["job_id"].map(score_by_job)).dropna(
            subset=["score", field]
        )
        means = scored.groupby(["variant", field])["score"].mean()
        for variant in variants:
            if variant not in means.index.get_level_values(0):
                continue
            series = means.loc[variant].sort_index()
            x = [float(v) for v in series.index]
            (line,) = ax.plot(
                x, (series * scale).to_numpy(), label=variant, linewidth=1.5, markersize=5,
                **styles[variant],
            )  # fmt: skip
            handles.setdefault(variant, line)
        values = sorted(float(v) for v in members[field].dropna().unique())
        if log:
            ax.set_xscale("log")
        _fixed_ticks(ax, values, format_lr if field == "lr" else _format_value)
        base_value = base[field]
        if not pd.isna(base_value):
            ax.axvline(float(base_value), color="0.6", linestyle=":", linewidth=1)
        ax.set_title(f"({chr(ord('a') + i)}) {label}")
        ax.set_xlabel(label)
        if i % ncols == 0:
            ax.set_ylabel(f"{metric} (%)" if percent else metric)
        ax.grid(True, alpha=0.3)
    shown = [v for v in variants if v in handles]
    _, right = _legend_outside(
        fig, fig.axes[0], [handles[v] for v in shown], shown, "variant\n(dotted: base)"
    )
    fig.suptitle(f"{task}: {metric} when one hyperparameter varies (mean over seeds)")
    fig.tight_layout(rect=(0, 0, right, 1))
    return fig


def _format_value(value: float) -> str:
    if value >= 1000 and value % 1000 == 0:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _config_label(row: pd.Series, base_rank) -> str:
    """Variant name plus what sets this config apart: rank, variant_params, † for checkpointing."""
    label = str(row["variant"])
    extras = []
    if "rank" in row and not pd.isna(row["rank"]) and row["rank"] != base_rank:
        extras.append(f"r={int(row['rank'])}")
    params = row.get("variant_params")
    if isinstance(params, str) and params not in ("", "{}"):
        params = json.loads(params)
    if isinstance(params, dict):
        extras += [f"{k}={v}" for k, v in sorted(params.items())]
    if extras:
        label += f" ({', '.join(extras)})"
    if bool(row.get("adapter_checkpointing", False)):
        label += " †"
    return label


def overhead_figure(
    jobs: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    reference: str = REFERENCE_VARIANT,
) -> Figure:
    """Fig. 8: training time and peak memory per configuration, horizontal bars, two panels.

    ``summary`` has one row per (job_id, metric) with ``value``: the jobs' "summary" metrics
    (``load_figure_frames`` reads them). Time is ``train_seconds`` when any job has it, else
    ``step_time_s``; memory is ``peak_memory_mb`` shown in GiB. A bar is one configuration: the
    variant, plus its rank when it differs from the most common rank, its ``variant_params`` and
    "†" when ``adapter_checkpointing`` is on; its value is the mean over the finished jobs
    (seeds) of that configuration. Bars follow the order the jobs were planned in. The plain
    ``reference`` variant (LoRA, no †) is drawn as a dashed line and every bar is annotated
    with its ratio to it ("1.23×").
    """
    if summary.empty or jobs.empty:
        raise ValueError("no summary metrics to plot (no finished jobs?)")
    present = set(summary["metric"].astype(str))
    time_metric = next((m for m in TIME_METRICS if m in present), None)
    if time_metric is None or MEMORY_METRIC not in present:
        wanted = f"one of {', '.join(TIME_METRICS)} and {MEMORY_METRIC}"
        raise ValueError(f"summary metrics lack {wanted}; present: {', '.join(sorted(present))}")
    base_rank = _mode(jobs["rank"]) if "rank" in jobs.columns else None
    labelled = jobs.assign(config=jobs.apply(_config_label, axis=1, base_rank=base_rank))
    wide = (
        summary[summary["metric"].isin([time_metric, MEMORY_METRIC])]
        .pivot_table(index="job_id", columns="metric", values="value", aggfunc="first")
        .reindex(columns=[time_metric, MEMORY_METRIC])
    )
    merged = labelled.merge(wide, left_on="job_id", right_index=True, how="inner")
    if merged.empty:
        raise ValueError("no job has summary metrics")
    order = merged.groupby("config")["job_id"].min().sort_values().index
    stats = merged.groupby("config")[[time_metric, MEMORY_METRIC]].mean().reindex(order)
    variant_of = merged.groupby("config")["variant"].first().reindex(order)
    plain_ref = [c for c in order if variant_of[c] == reference and "†" not in c and "(" not in c]

    styles = variant_styles(variant_of.astype(str))
    colors = [styles[str(variant_of[c])]["color"] for c in order]
    height = max(3.0, 0.32 * len(order) + 1.3)
    fig = Figure(figsize=(12.0, height))
    panels = fig.subplots(1, 2, sharey=True)
    unit = 1.0 if time_metric == "train_seconds" else 1000.0
    columns = (
        (time_metric, f"training time ({'s' if unit == 1 else 'ms/step'})", unit),
        (MEMORY_METRIC, "peak GPU memory (GiB)", 1 / 1024),
    )
    y = list(range(len(order)))
    for ax, (column, xlabel, factor) in zip(panels, columns, strict=True):
        values = (stats[column] * factor).to_numpy()
        ax.barh(y, values, color=colors, edgecolor="0.2", linewidth=0.5)
        ref = float(stats.loc[plain_ref[0], column] * factor) if plain_ref else math.nan
        if not math.isnan(ref) and ref > 0:
            ax.axvline(ref, color="0.25", linestyle="--", linewidth=1, label=f"{reference}")
            for yi, value in zip(y, values, strict=True):
                if not math.isnan(value):
                    ax.text(value, yi, f" {value / ref:.2f}×", va="center", fontsize="x-small")
        finite = [v for v in values if not math.isnan(v)]
        ax.set_xlim(0, max(finite, default=1) * 1.18)
        ax.set_xlabel(xlabel)
        ax.grid(True, axis="x", alpha=0.3)
    panels[0].set_yticks(y, list(order))
    panels[0].invert_yaxis()  # planned order reads top to bottom
    panels[0].set_title("training time")
    panels[1].set_title("peak memory")
    note = f"ratios relative to {reference} (dashed)"
    if any("†" in c for c in order):
        note += "; † = adapter activation checkpointing"
    fig.suptitle(f"Computational and memory overhead\n{note}", fontsize="medium")
    fig.tight_layout()
    return fig


def load_figure_frames(
    engine, *, sweep: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(jobs, evals, summary) for the figures: jobs with the config fields they group by, and
    the summary metrics of finished jobs as (job_id, metric, value). Reads only."""
    from lorabench.report.load import load_data

    data = load_data(engine, sweep=sweep)
    return data.jobs, data.evals, data.summary


def save_figure(
    fig: Figure, out_dir: Path, name: str, formats: Iterable[str] = ("png",)
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format (out_dir created); return paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Legends kept out of the layout must still be inside the cropped image; passing any extra
    # artists replaces matplotlib's defaults (suptitle, ...), so those are listed too.
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    extra = [*fig.get_default_bbox_extra_artists(), *fig.legends, *legends]
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt.lstrip('.')}"
        fig.savefig(path, dpi=150, bbox_inches="tight", bbox_extra_artists=extra)
        paths.append(path)
    return paths
