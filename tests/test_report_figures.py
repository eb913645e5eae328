"""Figures (lr sweep by family, sensitivity, overhead) on hand-made frames and a tiny database."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lorabench.report.aggregate import EVAL_COLUMNS, JOBS_COLUMNS
from lorabench.report.figures import (
    load_figure_frames,
    lr_sweep_from_frames,
    overhead_figure,
    save_figure,
    sensitivity_figure,
)

BASE = {"train_size": 100, "batch_size": 64, "dropout": 0.0, "lr": 5e-5}


def _job(job_id: int, task: str, variant: str, seed: int = 0, **settings) -> dict:
    cfg = {**BASE, **settings}
    return {
        "job_id": job_id, "sweep": "s", "task": task, "model": "m", "variant": variant,
        "rank": settings.get("rank", 8), "alpha": 16.0, "lr": cfg["lr"], "seed": seed,
        "group_hash": f"g{job_id}", "state": "done", "train_size": cfg["train_size"],
        "batch_size": cfg["batch_size"], "dropout": cfg["dropout"],
        "adapter_checkpointing": settings.get("adapter_checkpointing", False),
        "variant_params": json.dumps(settings.get("variant_params", {})),
    }  # fmt: skip


def _frames(rows: list[tuple[dict, list[float]]], metric: str):
    """(jobs, evals): each job with its per-epoch values of ``metric``."""
    jobs = pd.DataFrame([job for job, _ in rows])
    evals = pd.DataFrame(
        [
            {**{c: job[c] for c in EVAL_COLUMNS[:10]}, "epoch": e, "metric": metric, "value": v}
            for job, values in rows
            for e, v in enumerate(values, start=1)
        ]
    )
    return jobs, evals


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _curves(ax):
    """Data lines only: reference lines (the dotted base value) have "_"-prefixed labels."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


# ---- lr sweep by family -------------------------------------------------------------------------

LR_TASKS = {  # task -> (metric, variants)
    "glue-sst2": ("accuracy", ("lora", "dora")),
    "glue-rte": ("accuracy", ("lora",)),
    "gsm8k": ("accuracy_strict", ("lora", "dora", "pissa")),
    "ic-dtd": ("accuracy", ("lora",)),
}


@pytest.fixture
def lr_frames():
    rows, job_id = [], 1
    for task, (_, variants) in LR_TASKS.items():
        for k, variant in enumerate(variants):
            for lr in (1e-4, 1e-3):
                for seed in (0, 1):
                    score = 0.5 + 0.1 * k + (0.2 if lr == 1e-3 else 0) + 0.02 * seed
                    rows.append((_job(job_id, task, variant, seed, lr=lr), [score - 0.1, score]))
                    job_id += 1
    jobs = pd.DataFrame([job for job, _ in rows])
    evals = pd.concat(
        [_frames([r for r in rows if r[0]["task"] == t], m)[1] for t, (m, _) in LR_TASKS.items()]
    )
    return jobs[JOBS_COLUMNS], evals


def test_lr_sweep_from_frames_layout(lr_frames):
    jobs, evals = lr_frames
    fig = lr_sweep_from_frames(jobs, evals)
    panels = _panels(fig)
    # Families in the paper's order nlu, nlg, ic; within one, tasks sorted.
    assert [ax.get_title() for ax in panels] == [
        "glue-rte (accuracy)", "glue-sst2 (accuracy)", "gsm8k (accuracy_strict)",
        "ic-dtd (accuracy)",
    ]  # fmt: skip
    rte, sst2, gsm8k, dtd = panels
    assert [len(ax.get_lines()) for ax in panels] == [1, 2, 3, 1]
    assert all(ax.get_xscale() == "log" for ax in panels)
    assert list(sst2.get_lines()[0].get_xdata()) == [1e-4, 1e-3]
    # sst2 dora: seeds 0.6/0.62 at 1e-4 and 0.8/0.82 at 1e-3 -> mean x100.
    assert list(sst2.get_lines()[0].get_ydata()) == pytest.approx([61.0, 81.0])
    assert sst2.get_shared_y_axes().joined(rte, sst2)
    assert not gsm8k.get_shared_y_axes().joined(rte, gsm8k)
    assert not dtd.get_shared_y_axes().joined(gsm8k, dtd)
    # Each family starts its own row.
    rows = [ax.get_subplotspec().rowspan.start for ax in panels]
    assert rows == [0, 0, 1, 2]
    assert rte.get_ylabel() == "NLU: score (%)" and gsm8k.get_ylabel() == "NLG: score (%)"
    # One colour per variant in every panel.
    colour = {line.get_label(): line.get_color() for ax in panels for line in ax.get_lines()}
    for ax in panels:
        for line in ax.get_lines():
            assert line.get_color() == colour[line.get_label()]
    legend = [t.get_text() for t in rte.get_legend().get_texts()]
    assert legend == ["dora", "lora", "pissa"]


# ---- sensitivity --------------------------------------------------------------------------------

SENS_VALUES = {
    "train_size": (100, 200, 400),
    "batch_size": (16, 64, 256),
    "dropout": (0.0, 0.1),
    "lr": (1e-5, 5e-5, 1e-4, 1e-3),
}


def _sens_score(variant: str, field: str, value: float, seed: int) -> float:
    offset = {"lora": 0.0, "pissa": 0.05}[variant]
    rank = SENS_VALUES[field].index(value)
    return 0.5 + offset + 0.01 * rank + 0.02 * seed


@pytest.fixture
def sens_frames():
    rows, job_id, seen = [], 1, set()
    for variant in ("lora", "pissa"):
        for field, values in SENS_VALUES.items():
            for value in values:
                config = {**BASE, field: value}
                key = (variant, *config.values())
                if key in seen:  # the base point is planned once
                    continue
                seen.add(key)
                base_rank = {f: SENS_VALUES[f].index(BASE[f]) for f in BASE}
                for seed in (0, 1):
                    # Scores encode (field, value) except at the base, which uses the lr ranks.
                    if value == BASE[field]:
                        score = 0.5 + {"lora": 0, "pissa": 0.05}[variant]
                        score += 0.01 * base_rank["lr"] + 0.02 * seed
                    else:
                        score = _sens_score(variant, field, value, seed)
                    job = _job(job_id, "gsm8k", variant, seed, **{field: value})
                    rows.append((job, [score - 0.2, score, score - 0.1]))
                    job_id += 1
    # Varies two fields at once: belongs to no panel.
    rows.append((_job(job_id, "gsm8k", "lora", 0, dropout=0.1, lr=1e-3), [0.99]))
    # A different rank is not on the rank-8 curves.
    rows.append((_job(job_id + 1, "gsm8k", "lora", 0, rank=16, lr=1e-3), [0.99]))
    return _frames(rows, "accuracy_strict")


def test_sensitivity_panels_members_and_means(sens_frames):
    jobs, evals = sens_frames
    fig = sensitivity_figure(jobs, evals)
    panels = _panels(fig)
    assert len(panels) == 4
    assert [ax.get_xlabel() for ax in panels] == [
        "training data volume (samples)", "batch size", "dropout", "learning rate",
    ]  # fmt: skip
    assert [ax.get_xscale() for ax in panels] == ["log", "log", "linear", "log"]
    assert [len(_curves(ax)) for ax in panels] == [2, 2, 2, 2]
    for ax, values in zip(panels, SENS_VALUES.values(), strict=True):
        for line in _curves(ax):
            assert list(line.get_xdata()) == [float(v) for v in values]
    lr_panel = panels[3]
    lora = next(line for line in _curves(lr_panel) if line.get_label() == "lora")
    # Mean of seeds 0 and 1 (best epoch is the middle one): 0.5 + 0.01 * rank + 0.01.
    assert list(lora.get_ydata()) == pytest.approx([51.0, 52.0, 53.0, 54.0])
    dropout_panel = panels[2]
    pissa = next(line for line in _curves(dropout_panel) if line.get_label() == "pissa")
    # Base (dropout 0) is scored with the lr rank of 5e-5 (1): 0.56; dropout 0.1: 0.56 too.
    assert list(pissa.get_ydata()) == pytest.approx([57.0, 57.0])
    # The base value is marked in every panel (dotted vertical line).
    bases = [
        [line.get_xdata()[0] for line in ax.get_lines() if line not in _curves(ax)] for ax in panels
    ]
    assert bases == [[100], [64], [0.0], [5e-5]]
    colours = {(ax, line.get_label()): line.get_color() for ax in panels for line in _curves(ax)}
    assert len({c for (_, v), c in colours.items() if v == "lora"}) == 1


def test_sensitivity_only_lr_with_load_frames_columns(sens_frames):
    jobs, evals = sens_frames
    fig = sensitivity_figure(jobs[JOBS_COLUMNS], evals)
    (panel,) = _panels(fig)
    assert panel.get_xlabel() == "learning rate"
    # Without the other columns every rank-8 lr value is on the curve (1e-3 pools 3 jobs).
    assert len(_curves(panel)) == 2


def test_sensitivity_needs_one_task_and_a_varying_field(sens_frames):
    jobs, evals = sens_frames
    other = jobs.head(2).assign(task="glue-sst2")
    with pytest.raises(ValueError, match="pick a task"):
        sensitivity_figure(pd.concat([jobs, other]), evals)
    with pytest.raises(ValueError, match="varies"):
        sensitivity_figure(jobs.head(1), evals)


# ---- overhead -----------------------------------------------------------------------------------

OVERHEAD = [  # (settings, train_seconds, peak_memory_mb) for seeds 0 and 1
    ({"variant": "lora"}, (100.0, 110.0), (2048.0, 2048.0)),
    ({"variant": "dora"}, (210.0, 210.0), (4096.0, 4096.0)),
    ({"variant": "lora", "adapter_checkpointing": True}, (150.0, 150.0), (1024.0, 1024.0)),
    ({"variant": "randlora", "variant_params": {"max_basis_dim": 4096}}, (315.0,), (3072.0,)),
]


@pytest.fixture
def overhead_frames():
    jobs, summary, job_id = [], [], 1
    for settings, times, memories in OVERHEAD:
        for seed, (time, memory) in enumerate(zip(times, memories, strict=True)):
            jobs.append(_job(job_id, "gsm8k", seed=seed, **settings))
            summary += [
                {"job_id": job_id, "metric": "train_seconds", "value": time},
                {"job_id": job_id, "metric": "peak_memory_mb", "value": memory},
                {"job_id": job_id, "metric": "step_time_s", "value": 9.0},
            ]
            job_id += 1
    return pd.DataFrame(jobs), pd.DataFrame(summary)


def test_overhead_bars_labels_and_ratios(overhead_frames):
    jobs, summary = overhead_frames
    fig = overhead_figure(jobs, summary)
    time_ax, memory_ax = _panels(fig)
    assert len(time_ax.patches) == len(memory_ax.patches) == 4
    labels = [t.get_text() for t in time_ax.get_yticklabels()]
    assert labels == ["lora", "dora", "lora †", "randlora (max_basis_dim=4096)"]
    assert [p.get_width() for p in time_ax.patches] == pytest.approx([105, 210, 150, 315])
    assert [p.get_width() for p in memory_ax.patches] == pytest.approx([2, 4, 1, 3])
    assert [t.get_text() for t in time_ax.texts] == [" 1.00×", " 2.00×", " 1.43×", " 3.00×"]
    assert [t.get_text() for t in memory_ax.texts] == [" 1.00×", " 2.00×", " 0.50×", " 1.50×"]
    assert time_ax.get_xlabel() == "training time (s)"
    assert memory_ax.get_xlabel() == "peak GPU memory (GiB)"
    # LoRA and LoRA † share LoRA's colour.
    colours = [p.get_facecolor() for p in time_ax.patches]
    assert colours[0] == colours[2] != colours[1]
    assert "†" in fig.get_suptitle()


def test_overhead_falls_back_to_step_time(overhead_frames):
    jobs, summary = overhead_frames
    summary = summary[summary["metric"] != "train_seconds"]
    time_ax, _ = _panels(overhead_figure(jobs, summary))
    assert time_ax.get_xlabel() == "training time (ms/step)"
    assert [p.get_width() for p in time_ax.patches] == pytest.approx([9000.0] * 4)
    with pytest.raises(ValueError, match="peak_memory_mb"):
        overhead_figure(jobs, summary[summary["metric"] != "peak_memory_mb"])


# ---- files --------------------------------------------------------------------------------------


def test_every_figure_saves_png_and_svg(lr_frames, sens_frames, overhead_frames, tmp_path):
    figures = {
        "lr-sweep": lr_sweep_from_frames(*lr_frames),
        "sensitivity": sensitivity_figure(*sens_frames),
        "overhead": overhead_figure(*overhead_frames),
    }
    for name, fig in figures.items():
        png, svg = save_figure(fig, tmp_path, name, formats=("png", "svg"))
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
        assert b"<svg" in svg.read_bytes()[:1000] and svg.stat().st_size > 5000


# ---- loading from a database --------------------------------------------------------------------


def test_load_figure_frames_reads_config_fields_and_summary(tmp_path):
    from lorabench.config import resolve_job
    from lorabench.store import MetricRow, claim, enqueue, finish, open_engine, register_worker

    engine = open_engine(str(tmp_path / "figs.db"), create=True)
    base = {"task": "bbc-news", "variant": "lora", "lr": 1e-4, "train_size": 50}
    enqueue(
        engine,
        "s",
        [
            resolve_job(base),
            resolve_job({**base, "adapter_checkpointing": True, "batch_size": 4}),
            resolve_job({**base, "variant": "randlora", "variant_params": {"max_basis_dim": 64}}),
        ],
    )
    worker = register_worker(engine, "cpu")
    for memory in (2048.0, 1024.0):  # the third job stays queued
        claimed = claim(engine, worker, lease_seconds=60)
        finish(
            engine,
            claimed,
            [
                MetricRow("eval", "accuracy", 10, 0.5, epoch=1),
                MetricRow("summary", "train_seconds", 0, 100.0),
                MetricRow("summary", "peak_memory_mb", 0, memory),
                MetricRow("train", "loss", 10, 1.0),
            ],
        )
    jobs, evals, summary = load_figure_frames(engine)
    assert jobs["train_size"].tolist() == [50, 50, 50]
    assert jobs["adapter_checkpointing"].tolist() == [False, True, False]
    assert jobs["batch_size"].iloc[1] == 4 and jobs["dropout"].tolist() == [0.0] * 3
    assert jobs["variant_params"].tolist()[2] == '{"max_basis_dim": 64}'
    assert jobs["state"].tolist() == ["done", "done", "queued"]
    assert evals["metric"].tolist() == ["accuracy", "accuracy"]
    assert list(summary.columns) == ["job_id", "metric", "value"]
    assert summary["metric"].tolist() == ["train_seconds", "peak_memory_mb"] * 2
    time_ax, memory_ax = _panels(overhead_figure(jobs, summary))
    assert [t.get_text() for t in time_ax.get_yticklabels()] == ["lora", "lora †"]
    assert [p.get_width() for p in memory_ax.patches] == pytest.approx([2.0, 1.0])
    # The same database through the command line: both paper figures, as PNG and SVG.
    from typer.testing import CliRunner

    from lorabench.cli import app

    db, out = str(tmp_path / "figs.db"), tmp_path / "reports"
    for figure in ("overhead", "sensitivity"):
        result = CliRunner().invoke(
            app, ["report", "--db", db, "--figure", figure, "--format", "png,svg", "--out", out]
        )
        assert result.exit_code == 0, result.output
        for suffix in ("png", "svg"):
            assert (out / f"{figure}.{suffix}").stat().st_size > 0
