"""The paper-layout tables: glue, ic, nlg, highrank, overhead and sensitivity.

Shared conventions (those of `aggregate`): a job's score is its best epoch (or the last with
``rule="last"``); a cell is the mean ± sample std (ddof=1) over the seeds that finished; a cell
without any finished score is "—" followed by the states of its jobs ("— (1 queued)").
Values are kept in display units: scores x100 when the metric is a fraction (the paper's
percent; CoLA's MCC and STS-B's Pearson too), as is otherwise.

Table-specific rules:

* glue / ic: one block per learning rate, rows variants, columns the tasks (paper order) and
  AVG = mean of the task means, shown only when every task of the benchmark has a value
  (9 GLUE tasks, 7 image tasks), as the paper's AVG is over all of them.
* nlg: one block per NLG task, rows variants, columns learning rates.
* highrank: jobs with rank >= 64 (the paper's high-rank sweep uses r = 128); rows
  "variant r=R α=A", columns task x learning rate, one block (Table III).
* overhead: summary metrics of finished jobs, one block per (task, model): adapter params,
  mean step time, train time, peak memory, and their ratios to plain LoRA (no †, no extra
  variant settings) of the same block. Time ratios use the mean step time.
* sensitivity: per task, the base point is the most frequent value of each axis (train_size,
  batch_size, dropout, lr) among the task's jobs (ties: the smallest); a job belongs to axis X
  when every other axis is at its base value, so the base job appears on every axis. Other
  fields (rank, model, ...) are pooled unless they vary, in which case they label the row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from lorabench.report.aggregate import (
    MISSING,
    _describe_pending,
    format_lr,
    job_scores,
)
from lorabench.report.load import Data
from lorabench.report.lr import NothingToReport
from lorabench.tasks import get_task_info, task_names

TABLE_NAMES = ("glue", "ic", "nlg", "highrank", "overhead", "sensitivity")
GLUE_TASKS = (
    "glue-sst2", "glue-cola", "glue-mnli", "glue-mrpc", "glue-qnli",
    "glue-qqp", "glue-rte", "glue-stsb", "glue-wnli",
)  # fmt: skip
AVG = "AVG"
HIGH_RANK = 64
SENSITIVITY_AXES = ("train_size", "batch_size", "dropout", "lr")
_DISTINGUISHING = ("model", "rank", "alpha")
NOTE = (
    "Mean ± sample std (ddof=1) over seeds of each job's {rule} epoch; no ± with a single seed; "
    "— = no finished run (its unfinished jobs in parentheses)."
)


def ic_tasks() -> tuple[str, ...]:
    return tuple(n for n in task_names() if n.startswith("ic-"))


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- cells and tables


@dataclass
class Cell:
    """One table cell in display units; ``paper``/``diff`` are NaN unless compared."""

    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    pending: str = ""
    paper: float = math.nan

    @property
    def diff(self) -> float:
        return self.mean - self.paper

    def text(self, decimals: int, compare: bool) -> str:
        if not self.n or pd.isna(self.mean):
            text = f"{MISSING} ({self.pending})" if self.pending else MISSING
        else:
            text = f"{self.mean:.{decimals}f}"
            if self.n > 1 and not pd.isna(self.std):
                text += f" ± {self.std:.{decimals}f}"
        if compare:
            if pd.isna(self.paper):
                text += " (paper —)"
            elif pd.isna(self.mean):
                text += f" (paper {self.paper:.{decimals}f})"
            else:
                text += f" (paper {self.paper:.{decimals}f}, {self.diff:+.{decimals}f})"
        return text


@dataclass
class Block:
    title: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    decimals: dict[str, int] = field(default_factory=dict)  # per column; 2 otherwise
    compared: tuple[str, ...] | None = None  # columns with a paper value; None: all

    def cell(self, row: str, column: str) -> Cell:
        return self.cells.get((row, column), Cell())


@dataclass
class ReportTable:
    name: str
    title: str
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)
    compare: bool = False


def _scaled_scores(
    data: Data, metric: str | None, rule: str
) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Per-job scores in display units joined to the job's config, and per task whether x100."""
    frames, percent = [], {}
    wanted_found = metric is None
    for task in sorted(data.jobs["task"].unique()):
        task_metric = metric or get_task_info(task).primary_metric
        evals = data.evals[data.evals["task"] == task]
        rows = evals[evals["metric"] == task_metric]
        percent[task] = rows.empty or bool(rows["value"].dropna().between(-1, 1).all())
        if rows.empty:
            continue
        wanted_found = True
        scores = job_scores(evals, task_metric, rule)
        scale = 100.0 if percent[task] else 1.0
        frames.append(scores[["job_id", "score"]].assign(score=scores["score"] * scale))
    if not wanted_found and not data.evals.empty:
        present = ", ".join(sorted(data.evals["metric"].unique()))
        raise ValueError(f"unknown metric {metric!r}; metrics present: {present}")
    if not frames:
        return pd.DataFrame(columns=["job_id", "score"]), percent
    return pd.concat(frames, ignore_index=True), percent


def _cells(
    scores: pd.DataFrame,
    jobs: pd.DataFrame,
    row_of: Callable[[pd.Series], str],
    col_of: Callable[[pd.Series], str],
) -> dict[tuple[str, str], Cell]:
    """Seed statistics of ``scores`` (job_id, score) per (row, column) of ``jobs``."""
    if jobs.empty:
        return {}
    keyed = jobs.assign(
        _row=jobs.apply(row_of, axis=1).astype(str), _col=jobs.apply(col_of, axis=1).astype(str)
    )
    cells: dict[tuple[str, str], Cell] = {}
    scored = keyed.merge(scores, on="job_id", how="inner")
    for (row, col), group in scored.groupby(["_row", "_col"]):
        values = group["score"].astype(float).dropna()
        if len(values):
            std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            cells[(row, col)] = Cell(float(values.mean()), std, len(values))
    for (row, col), group in keyed.groupby(["_row", "_col"]):
        if (row, col) not in cells:
            counts = group["state"].value_counts()
            cells[(row, col)] = Cell(
                pending=_describe_pending({str(s): int(c) for s, c in counts.items()})
            )
    return cells


def _row_labeller(jobs: pd.DataFrame) -> Callable[[pd.Series], str]:
    """The variant, suffixed with the settings that vary in ``jobs`` ("lora r=16")."""
    varying = [c for c in _DISTINGUISHING if jobs[c].nunique() > 1]

    def label(job: pd.Series) -> str:
        parts = [str(job["variant"])]
        for column in varying:
            value = job[column]
            if column == "model":
                parts.append(str(value))
            else:
                parts.append(f"{'r' if column == 'rank' else 'α'}={float(value):g}")
        return " ".join(parts)

    return label


def _ordered(values) -> list[str]:  # noqa: ANN001
    return sorted({str(v) for v in values})


def _lr_label(job: pd.Series) -> str:
    return format_lr(float(job["lr"]))


def _require_jobs(data: Data, what: str) -> None:
    if data.jobs.empty:
        raise NothingToReport(f"no {what} jobs in the database; plan and run them first")


# --------------------------------------------------------------------------- the tables


def _benchmark_table(
    name: str,
    title: str,
    tasks: tuple[str, ...],
    data: Data,
    *,
    metric,
    rule,
    paper,  # noqa: ANN001
) -> ReportTable:
    data = data.only(data.jobs["task"].isin(tasks))
    _require_jobs(data, name)
    scores, _ = _scaled_scores(data, metric, rule)
    label = _row_labeller(data.jobs)
    variant_of = {label(job): str(job["variant"]) for _, job in data.jobs.iterrows()}
    columns = [t for t in tasks if t in set(data.jobs["task"])]
    blocks = []
    for lr in sorted({float(x) for x in data.jobs["lr"]}):
        jobs = data.jobs[data.jobs["lr"].astype(float) == lr]
        cells = _cells(scores, jobs, label, lambda job: str(job["task"]))
        rows = _ordered(cells_row for cells_row, _ in cells)
        for row in rows:
            means = [cells.get((row, t), Cell()).mean for t in tasks]
            has_all = all(not pd.isna(m) for m in means)
            cells[(row, AVG)] = Cell(sum(means) / len(means), n=1) if has_all else Cell()
            if paper is not None:
                for column in [*columns, AVG]:
                    key = ("glue-avg" if column == AVG else column, variant_of[row], lr)
                    cells.setdefault((row, column), Cell()).paper = paper.get(key, math.nan)
        blocks.append(Block(f"learning rate {format_lr(lr)}", rows, [*columns, AVG], cells))
    notes = [
        f"AVG: mean of the task means, only when all {len(tasks)} tasks have a value.",
        NOTE.format(rule=rule),
    ]
    return ReportTable(name, title, blocks, notes, compare=paper is not None)


def _glue_paper() -> dict[tuple[str, str, float], float]:
    from lorabench.report.reference import paper_table

    frame = paper_table("glue")
    return {
        (str(r.task), str(r.variant), _lr_key(r.lr)): float(r.value)
        for r in frame.itertuples(index=False)
    }


def _lr_key(lr: float) -> float:
    # Learning rates read from JSON and from CSV must meet as dict keys.
    return float(f"{float(lr):.6e}")


def glue_table(data: Data, *, metric=None, rule="best", compare=False) -> ReportTable:  # noqa: ANN001
    paper = None
    if compare:
        paper = {(t, v, _lr_key(lr)): x for (t, v, lr), x in _glue_paper().items()}
    data = data.only(data.jobs["lr"].notna())
    data.jobs = data.jobs.assign(lr=data.jobs["lr"].map(_lr_key))
    return _benchmark_table(
        "glue", "GLUE by learning rate (Tables IV-X layout)", GLUE_TASKS, data,
        metric=metric, rule=rule, paper=paper,
    )  # fmt: skip


def ic_table(data: Data, *, metric=None, rule="best") -> ReportTable:  # noqa: ANN001
    return _benchmark_table(
        "ic", "Image classification by learning rate", ic_tasks(), data,
        metric=metric, rule=rule, paper=None,
    )  # fmt: skip


def nlg_table(data: Data, *, metric=None, rule="best") -> ReportTable:  # noqa: ANN001
    nlg = [t for t in task_names() if get_task_info(t).family == "nlg"]
    data = data.only(data.jobs["task"].isin(nlg))
    _require_jobs(data, "NLG")
    scores, _ = _scaled_scores(data, metric, rule)
    blocks = []
    for task in sorted(data.jobs["task"].unique()):
        jobs = data.jobs[data.jobs["task"] == task]
        label = _row_labeller(jobs)
        cells = _cells(scores, jobs, label, _lr_label)
        lrs = [format_lr(x) for x in sorted({float(x) for x in jobs["lr"]})]
        task_metric = metric or get_task_info(task).primary_metric
        blocks.append(Block(f"{task}: {task_metric}", _ordered(r for r, _ in cells), lrs, cells))
    return ReportTable("nlg", "NLG by learning rate", blocks, [NOTE.format(rule=rule)])


def highrank_table(data: Data, *, metric=None, rule="best", compare=False) -> ReportTable:  # noqa: ANN001
    data = data.only(data.jobs["rank"].astype(float) >= HIGH_RANK)
    _require_jobs(data, f"high-rank (rank >= {HIGH_RANK})")
    scores, _ = _scaled_scores(data, metric, rule)

    def row_of(job: pd.Series) -> str:
        return f"{job['variant']} r={int(job['rank'])} α={float(job['alpha']):g}"

    def col_of(job: pd.Series) -> str:
        return f"{job['task']} {format_lr(float(job['lr']))}"

    cells = _cells(scores, data.jobs, row_of, col_of)
    ordered = data.jobs.assign(lr=data.jobs["lr"].astype(float)).sort_values(["task", "lr"])
    columns = list(dict.fromkeys(ordered.apply(col_of, axis=1)))
    rows = _ordered(r for r, _ in cells)
    if compare:
        from lorabench.report.reference import paper_table

        paper = {
            (str(p.task), str(p.variant), int(p.rank), float(p.alpha), _lr_key(p.lr)): float(
                p.value
            )
            for p in paper_table("highrank").itertuples(index=False)
        }
        for _, job in data.jobs.iterrows():
            key = (str(job["task"]), str(job["variant"]), int(job["rank"]), float(job["alpha"]),
                   _lr_key(job["lr"]))  # fmt: skip
            cell = cells.setdefault((row_of(job), col_of(job)), Cell())
            cell.paper = paper.get(key, math.nan)
    block = Block("rows: variant, rank, alpha; columns: task and learning rate", rows, columns,
                  cells)  # fmt: skip
    return ReportTable(
        "highrank", f"High rank (rank >= {HIGH_RANK}; Table III layout)", [block],
        [NOTE.format(rule=rule)], compare=compare,
    )  # fmt: skip


OVERHEAD_COLUMNS = {
    # column -> (summary metric, scale, decimals)
    "adapter params (M)": ("adapter_params", 1e-6, 2),
    "step time (s)": ("step_time_s", 1.0, 3),
    "train time (min)": ("train_seconds", 1 / 60, 1),
    "peak memory (MB)": ("peak_memory_mb", 1.0, 0),
}
# ratio column -> (our column, the paper's column)
OVERHEAD_RATIOS = {
    "params / LoRA": ("adapter params (M)", "params_m"),
    "time / LoRA": ("step time (s)", "time_min"),
    "memory / LoRA": ("peak memory (MB)", "memory_mb"),
}


def paper_setting(variant: str, params: dict) -> str:
    """The paper's Table II setting for a variant's parameters ("U=1024", "e=6" or "")."""
    if variant == "randlora":
        basis = int(params.get("max_basis_dim", 1024))
        return "" if basis >= 4096 else f"U={basis}"
    if variant == "loramoe":
        return f"e={int(params.get('experts', 8))}"
    return ""


def overhead_table(data: Data, *, compare=False) -> ReportTable:  # noqa: ANN001
    _require_jobs(data, "overhead")

    def row_of(job: pd.Series) -> str:
        params = json.loads(job["variant_params"])
        label = str(job["variant"]) + ("†" if job["adapter_checkpointing"] else "")
        if params:
            label += " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
        return label

    paper = None
    if compare:
        from lorabench.report.reference import paper_table

        frame = paper_table("overhead")
        frame["setting"] = frame["setting"].fillna("").astype(str)
        base = frame[(frame["variant"] == "lora") & ~frame["adapter_checkpointing"]].iloc[0]
        paper = {
            (str(p.variant), bool(p.adapter_checkpointing), p.setting): {
                ratio: float(getattr(p, theirs)) / float(base[theirs])
                for ratio, (_, theirs) in OVERHEAD_RATIOS.items()
            }
            for p in frame.itertuples(index=False)
        }
    blocks = []
    for (task, model), jobs in data.jobs.groupby(["task", "model"]):
        labels = jobs.apply(row_of, axis=1)
        cells: dict[tuple[str, str], Cell] = {}
        for column, (name, scale, _) in OVERHEAD_COLUMNS.items():
            values = data.summary[data.summary["metric"] == name]
            scores = values[["job_id"]].assign(score=values["value"] * scale)
            for key, cell in _cells(scores, jobs, row_of, lambda _job, c=column: c).items():
                cells[key] = cell
        rows = _ordered(labels)
        lora = next((r for r in rows if r == "lora"), None)
        for ratio, (ours, _) in OVERHEAD_RATIOS.items():
            reference = cells.get((lora, ours), Cell()).mean if lora else math.nan
            for row in rows:
                mean = cells.get((row, ours), Cell()).mean
                value = mean / reference if not pd.isna(reference) and reference else math.nan
                cells[(row, ratio)] = Cell(value, n=1) if not pd.isna(value) else Cell()
        if paper is not None:
            for _, job in jobs.iterrows():
                params = json.loads(job["variant_params"])
                key = (str(job["variant"]), bool(job["adapter_checkpointing"]),
                       paper_setting(str(job["variant"]), params))  # fmt: skip
                for ratio in OVERHEAD_RATIOS:
                    cells[(row_of(job), ratio)].paper = (paper.get(key) or {}).get(ratio, math.nan)
        decimals = {c: d for c, (_, _, d) in OVERHEAD_COLUMNS.items()}
        blocks.append(
            Block(
                f"{task}, {model}",
                rows,
                [*OVERHEAD_COLUMNS, *OVERHEAD_RATIOS],
                cells,
                decimals,
                compared=tuple(OVERHEAD_RATIOS),
            )  # fmt: skip
        )
    notes = [
        "† = adapter_checkpointing. Time ratio from the mean step time; ratios are to plain "
        "LoRA of the same block (— when it has no LoRA row).",
    ]
    if compare:
        notes.append(
            "Compared as ratios to LoRA (the paper: Llama-3.1-8B on an H200, minutes and MB; "
            "our hardware differs, so absolute times and memory are not comparable)."
        )
    return ReportTable("overhead", "Overhead (Table II layout)", blocks, notes, compare=compare)


def _base_point(jobs: pd.DataFrame) -> dict[str, object]:
    base = {}
    for axis in SENSITIVITY_AXES:
        values = jobs[axis].map(_axis_value)
        counts = values.value_counts()  # without the unset (None) values, counted here:
        unset = int(values.isna().sum())
        if counts.empty or unset > counts.max():  # e.g. train_size left to a task's data
            base[axis] = None
            continue
        top = counts[counts == counts.max()].index
        base[axis] = sorted(top, key=lambda v: (v is None, v if v is not None else 0))[0]
    return base


def _axis_value(value):  # noqa: ANN001, ANN202
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _axis_label(axis: str, value) -> str:  # noqa: ANN001
    if value is None:
        return "default"
    if axis == "lr":
        return format_lr(value)
    return f"{value:g}"


def sensitivity_table(data: Data, *, metric=None, rule="best") -> ReportTable:  # noqa: ANN001
    _require_jobs(data, "sensitivity")
    scores, _ = _scaled_scores(data, metric, rule)
    blocks = []
    for task in sorted(data.jobs["task"].unique()):
        jobs = data.jobs[data.jobs["task"] == task]
        base = _base_point(jobs)
        values = jobs[list(SENSITIVITY_AXES)].apply(lambda c: c.map(_axis_value))
        label = _row_labeller(jobs)
        task_metric = metric or get_task_info(task).primary_metric
        base_text = ", ".join(f"{a}={_axis_label(a, base[a])}" for a in SENSITIVITY_AXES)
        for axis in SENSITIVITY_AXES:
            others = [a for a in SENSITIVITY_AXES if a != axis]
            on_axis = pd.Series(True, index=jobs.index)
            for other in others:
                on_axis &= values[other].map(lambda v, b=base[other]: v == b)
            axis_jobs = jobs[on_axis]
            axis_values = sorted({v for v in values.loc[on_axis, axis] if v is not None})
            if len(axis_values) + values.loc[on_axis, axis].isna().any() < 2:
                continue  # not varied: nothing to show
            cells = _cells(scores, axis_jobs, label,
                           lambda job, a=axis: _axis_label(a, _axis_value(job[a])))  # fmt: skip
            columns = [_axis_label(axis, v) for v in axis_values]
            if values.loc[on_axis, axis].isna().any():
                columns.insert(0, "default")
            title = f"{task}: {task_metric} by {axis} (base: {base_text})"
            blocks.append(Block(title, _ordered(r for r, _ in cells), columns, cells))
    if not blocks:
        raise NothingToReport(
            "no sensitivity axis varies: need jobs differing from the base point in "
            f"one of {', '.join(SENSITIVITY_AXES)}"
        )
    notes = [
        "Base point: the most frequent value of each axis among the task's jobs (ties: the "
        "smallest); a column holds the jobs that differ from it in that axis only.",
        NOTE.format(rule=rule),
    ]
    return ReportTable("sensitivity", "Hyperparameter sensitivity (Fig. 6)", blocks, notes)


NO_PAPER_NUMBERS = {
    "lr": "the paper gives no per-task learning-rate table for our tasks",
    "nlg": "the paper's NLG learning-rate sweep is a plot (Fig. 7), not numbers",
    "ic": "the paper's image-classification tables (XI-XIX) are not available as numbers",
    "sensitivity": "the paper's sensitivity results are a plot (Fig. 6), not numbers",
}


def build_table(
    name: str, data: Data, *, metric: str | None = None, rule: str = "best",
    compare: bool = False,
) -> ReportTable:  # fmt: skip
    """One of TABLE_NAMES; ``compare`` adds the paper's values where the paper has them."""
    if name == "glue":
        return glue_table(data, metric=metric, rule=rule, compare=compare)
    if name == "highrank":
        return highrank_table(data, metric=metric, rule=rule, compare=compare)
    if name == "overhead":
        return overhead_table(data, compare=compare)
    builders = {"ic": ic_table, "nlg": nlg_table, "sensitivity": sensitivity_table}
    if name not in builders:
        raise ValueError(f"unknown table {name!r}; available: {', '.join(TABLE_NAMES)}")
    table = builders[name](data, metric=metric, rule=rule)
    if compare:
        table.notes.insert(0, f"--compare paper: {NO_PAPER_NUMBERS[name]}; nothing to compare.")
    return table


# --------------------------------------------------------------------------- rendering

CSV_COLUMNS = ["block", "row", "column", "mean", "std", "n", "pending", "paper", "diff"]


def _texts(block: Block, compare: bool) -> list[list[str]]:
    return [
        [row]
        + [
            block.cell(row, c).text(
                block.decimals.get(c, 2),
                compare and (block.compared is None or c in block.compared),
            )
            for c in block.columns
        ]
        for row in block.rows
    ]


def markdown(table: ReportTable) -> str:
    lines = [f"# {table.title}", ""]
    for block in table.blocks:
        header = ["", *block.columns]
        lines += [f"## {block.title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join([":--", *["--:"] * len(block.columns)]) + "|")
        for row in _texts(block, table.compare):
            lines.append("| " + " | ".join(t.replace("|", "\\|") for t in row) + " |")
        lines.append("")
    if table.compare:
        lines.append("Beside each value: the paper's value and ours − paper, in the paper's units.")
    lines += [*table.notes, ""]
    return "\n".join(lines)


def long_form(table: ReportTable) -> pd.DataFrame:
    """One row per cell, in display units (percent for fraction scores), paper/diff if compared."""
    records = []
    for block in table.blocks:
        for row in block.rows:
            for column in block.columns:
                cell = block.cell(row, column)
                records.append({
                    "block": block.title, "row": row, "column": column, "mean": cell.mean,
                    "std": cell.std, "n": cell.n, "pending": cell.pending,
                    "paper": cell.paper, "diff": cell.diff,
                })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


def rich_tables(table: ReportTable) -> list:
    from rich.table import Table

    out = []
    for block in table.blocks:
        rich = Table(title=f"{table.title}: {block.title}")
        rich.add_column("", no_wrap=True)
        for column in block.columns:
            rich.add_column(column, justify="right")
        for row in _texts(block, table.compare):
            rich.add_row(*row)
        out.append(rich)
    return out


def write_tables(table: ReportTable, out_dir, formats) -> list:  # noqa: ANN001
    """Write ``<name>-table.md`` / ``.csv`` (as ``formats`` asks) into ``out_dir``."""
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "md" in formats:
        path = out_dir / f"{table.name}-table.md"
        path.write_text(markdown(table), encoding="utf-8")
        written.append(path)
    if "csv" in formats:
        path = out_dir / f"{table.name}-table.csv"
        long_form(table).to_csv(path, index=False)
        written.append(path)
    return written
