"""Learning-rate sweep figures (one panel per task), drawn without pyplot (no global state)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from lorabench.report.aggregate import LrGrid, format_lr

MAX_COLUMNS = 3
PANEL_SIZE = (4.2, 3.4)  # inches per panel
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def lr_sweep_figure(grid_by_task: Mapping[str, LrGrid], *, metric: str, percent: bool) -> Figure:
    """One Axes per task: mean metric vs learning rate (log x), one line per variant.

    Error bars show the seed std where it exists (cells with >= 2 seeds); cells without a
    finished score are skipped. Variants keep the same colour/marker in every panel.
    """
    if not grid_by_task:
        raise ValueError("no task grids to plot")
    count = len(grid_by_task)
    ncols = min(count, MAX_COLUMNS)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols + 0.8, PANEL_SIZE[1] * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for spare in axes[count:]:
        fig.delaxes(spare)

    variants = sorted({str(v) for grid in grid_by_task.values() for v in grid.variants})
    styles = {
        v: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}
        for i, v in enumerate(variants)
    }
    scale = 100.0 if percent else 1.0
    ylabel = f"{metric} (%)" if percent else metric
    handles: dict[str, Line2D] = {}

    for i, (ax, (task, grid)) in enumerate(zip(axes, grid_by_task.items(), strict=False)):
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
        if grid.lrs:
            ax.xaxis.set_major_locator(FixedLocator(grid.lrs))
            ax.xaxis.set_major_formatter(FixedFormatter([format_lr(lr) for lr in grid.lrs]))
            ax.xaxis.set_minor_locator(NullLocator())
            if len(grid.lrs) > 4:
                ax.tick_params(axis="x", labelrotation=45)
        ax.set_title(str(task))
        ax.set_xlabel("learning rate")
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)

    axes[0].legend(
        handles=[handles[v] for v in variants if v in handles], title="variant", fontsize="small"
    )
    fig.suptitle(f"{metric} vs learning rate")
    fig.tight_layout()
    return fig


def save_figure(
    fig: Figure, out_dir: Path, name: str, formats: Iterable[str] = ("png",)
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format (out_dir created); return paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt.lstrip('.')}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths
