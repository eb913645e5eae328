"""Overhead (Table II layout): summary metrics of finished jobs, one block per (task, model):
adapter params, mean step time, train time, peak memory, and their ratios to plain LoRA (the
row "lora": no †, no variant settings) of the same block. Time ratios use the mean step time.
Rows always show † (adapter_checkpointing) and the variant's settings, which Table II lists."""

from __future__ import annotations

import json
import math

import pandas as pd

from lorabench.report.blocks import require_jobs
from lorabench.report.cells import Block, Cell, ReportTable, seed_cells
from lorabench.report.configs import row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring

AXES = ("task", "model")
REFERENCE = "lora"
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


def overhead_labels(jobs: pd.DataFrame, *, spanning: bool = False) -> pd.Series:
    """Row labels of the overhead table and bars of its figure: the variant, † when
    checkpointing, its variant settings, then any other field that varies within a (task,
    model) block ("loramoe experts=6", "lora †"). ``spanning``: one set of bars for all blocks,
    so the task and model are shown too where the jobs have several."""
    params = sorted(c for c in jobs.columns if c.startswith("variant_params."))
    blocks = [a for a in AXES if spanning and jobs[a].nunique() > 1]
    return row_labels(jobs, AXES, always=(*blocks, "adapter_checkpointing", *params))


def paper_setting(variant: str, params: dict) -> str:
    """The paper's Table II setting for a variant's parameters ("U=1024", "e=6" or "")."""
    if variant == "randlora":
        basis = int(params.get("max_basis_dim", 1024))
        return "" if basis >= 4096 else f"U={basis}"
    if variant == "loramoe":
        return f"e={int(params.get('experts', 8))}"
    return ""


def _paper_ratios() -> dict[tuple[str, bool, str], dict[str, float]]:
    from lorabench.report.reference import paper_table

    frame = paper_table("overhead")
    frame["setting"] = frame["setting"].fillna("").astype(str)
    base = frame[(frame["variant"] == REFERENCE) & ~frame["adapter_checkpointing"]].iloc[0]
    return {
        (str(p.variant), bool(p.adapter_checkpointing), p.setting): {
            ratio: float(getattr(p, theirs)) / float(base[theirs])
            for ratio, (_, theirs) in OVERHEAD_RATIOS.items()
        }
        for p in frame.itertuples(index=False)
    }


def _block(data: Data, title: str, jobs: pd.DataFrame, rows: pd.Series) -> Block:
    cells: dict[tuple[str, str], Cell] = {}
    for column, (metric, factor, _) in OVERHEAD_COLUMNS.items():
        values = data.summary[data.summary["metric"] == metric]
        scores = values[["job_id"]].assign(epoch=0, value=values["value"] * factor)
        columns = pd.Series(column, index=jobs.index)
        cells.update(seed_cells(jobs, rows, columns, scores))
    names = sorted(set(rows))
    for ratio, (ours, _) in OVERHEAD_RATIOS.items():
        reference = cells.get((REFERENCE, ours), Cell()).mean if REFERENCE in names else math.nan
        for row in names:
            mean = cells.get((row, ours), Cell()).mean
            value = mean / reference if not pd.isna(reference) and reference else math.nan
            cells[(row, ratio)] = Cell(value, n=1) if not pd.isna(value) else Cell()
    decimals = {c: d for c, (_, _, d) in OVERHEAD_COLUMNS.items()}
    return Block(title, names, [*OVERHEAD_COLUMNS, *OVERHEAD_RATIOS], cells, decimals,
                 compared=tuple(OVERHEAD_RATIOS))  # fmt: skip


@register_table("overhead", paper=True)
def overhead_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    require_jobs(data, "overhead")
    paper = _paper_ratios() if compare else None
    blocks = []
    for (task, model), jobs in data.jobs.groupby(["task", "model"]):
        rows = overhead_labels(jobs)
        block = _block(data, f"{task}, {model}", jobs, rows)
        if paper is not None:
            for index, job in jobs.iterrows():
                params = json.loads(job["variant_params"])
                key = (str(job["variant"]), bool(job["adapter_checkpointing"]),
                       paper_setting(str(job["variant"]), params))  # fmt: skip
                for ratio in OVERHEAD_RATIOS:
                    cell = block.cells.setdefault((rows[index], ratio), Cell())
                    cell.paper = (paper.get(key) or {}).get(ratio, math.nan)
        blocks.append(block)
    notes = [
        "† = adapter_checkpointing. Mean over seeds; time ratio from the mean step time; ratios "
        "are to plain LoRA of the same block (— when it has no LoRA row).",
    ]
    if compare:
        notes.append(
            "Compared as ratios to LoRA (the paper: Llama-3.1-8B on an H200, minutes and MB; "
            "our hardware differs, so absolute times and memory are not comparable)."
        )
    return ReportTable("overhead", "Overhead (Table II layout)", blocks, notes, compare=compare)
