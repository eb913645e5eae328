"""The learning-rate report: variant x LR table per task and the lr-sweep figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.table import Table

from lorabench.report.aggregate import LrGrid, lr_grid
from lorabench.report.figures import lr_sweep_figure, save_figure
from lorabench.report.render import rich_table, write_table
from lorabench.tasks import get_task_info

# Settings that, when they differ inside one task, must not be pooled into one cell.
_DISTINGUISHING = ("model", "rank", "alpha")


@dataclass
class LrReport:
    written: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


class NothingToReport(ValueError):
    pass


def _label_variants(frame: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """Suffix the variant with the settings that vary within its task, e.g. "lora r=16"."""
    frame = frame.copy()
    varying = [c for c in _DISTINGUISHING if jobs[c].nunique() > 1]
    if varying:
        prefix = {"model": "", "rank": "r=", "alpha": "α="}
        # Built row by row, not with DataFrame.apply: on an empty frame (no job finished yet)
        # apply returns a float frame, and adding that to the string column fails.
        labels = [
            " ".join([str(variant), *(f"{prefix[c]}{value:g}" if c != "model" else str(value)
                                      for c, value in zip(varying, values, strict=True))])
            for variant, *values in frame[["variant", *varying]].itertuples(index=False)
        ]  # fmt: skip
        frame["variant"] = pd.Series(labels, index=frame.index, dtype=frame["variant"].dtype)
    return frame


def _is_fraction(evals: pd.DataFrame) -> bool:
    # Correlations (CoLA's MCC, STS-B's Pearson) may dip below 0; the paper shows them x100 too.
    return bool(len(evals)) and bool(evals["value"].between(-1, 1).all())


def lr_report(
    jobs: pd.DataFrame,
    evals: pd.DataFrame,
    *,
    out_dir: Path,
    table: bool,
    figure: bool,
    task: str | None = None,
    metric: str | None = None,
    rule: str = "best",
    formats: tuple[str, ...] = ("md", "csv", "png"),
) -> LrReport:
    if task is not None:
        jobs, evals = jobs[jobs["task"] == task], evals[evals["task"] == task]
    if jobs.empty:
        where = f" for task {task!r}" if task else ""
        raise NothingToReport(f"no jobs in the database{where}; plan and run a sweep first")
    report = LrReport()
    grids: dict[str, LrGrid] = {}
    percent = True
    chosen_metric = metric
    for name in sorted(jobs["task"].unique()):
        task_jobs, task_evals = jobs[jobs["task"] == name], evals[evals["task"] == name]
        chosen_metric = metric or get_task_info(name).primary_metric
        task_metric = task_evals[task_evals["metric"] == chosen_metric]
        percent = percent and (task_metric.empty or _is_fraction(task_metric))
        grid = lr_grid(
            _label_variants(task_evals, task_jobs),
            _label_variants(task_jobs, task_jobs),
            chosen_metric,
            rule=rule,
        )
        grids[name] = grid
        if table:
            title = f"{name}: {chosen_metric} ({rule} epoch) by variant and learning rate"
            table_formats = [f for f in formats if f in ("md", "csv")]
            if table_formats:
                paths = write_table(grid, out_dir, f"lr-table-{name}", title=title, percent=percent)
                report.written += [p for p in paths if p.suffix.lstrip(".") in table_formats]
            report.tables.append(rich_table(grid, title=title, percent=percent))
    if figure:
        image_formats = tuple(f for f in formats if f in ("png", "svg", "pdf"))
        fig = lr_sweep_figure(grids, metric=chosen_metric or "metric", percent=percent)
        report.written += save_figure(fig, out_dir, "lr-sweep", formats=image_formats or ("png",))
    return report
