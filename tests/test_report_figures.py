"""Figures (lr sweep by family, sensitivity, overhead) on small synthetic databases."""

from __future__ import annotations

import pytest
from report_db import ReportDB
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.report.figures import lr_sweep, overhead_figure, sensitivity_figure
from lorabench.report.plot import save_figure
from lorabench.report.select import Scoring

BASE = {"train_size": 100, "batch_size": 64, "dropout": 0.0, "lr": 5e-5}
TEST_RULE = Scoring(select="test")


def _panels(fig):  # noqa: ANN001, ANN202
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _curves(ax):  # noqa: ANN001, ANN202
    """Data lines only: rings and reference lines have "_"-prefixed labels."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


# ---- lr sweep by family -------------------------------------------------------------------------

LR_TASKS = {  # task -> (metric, variants)
    "glue-sst2": ("accuracy", ("lora", "dora")),
    "glue-rte": ("accuracy", ("lora",)),
    "gsm8k": ("accuracy_strict", ("lora", "dora", "pissa")),
    "ic-dtd": ("accuracy", ("lora",)),
}


@pytest.fixture(scope="module")
def lr_db(tmp_path_factory):
    db = ReportDB(tmp_path_factory.mktemp("lr") / "lr.db")
    for task, (metric, variants) in LR_TASKS.items():
        for k, variant in enumerate(variants):
            for lr in (1e-4, 1e-3):
                for seed in (0, 1):
                    score = 0.5 + 0.1 * k + (0.2 if lr == 1e-3 else 0) + 0.02 * seed
                    db.add({"task": task, "variant": variant, "lr": lr, "seed": seed},
                           test={metric: [score - 0.1, score]})  # fmt: skip
    db.close()
    return db


def test_lr_sweep_layout(lr_db):
    with lr_db.data() as data:
        fig = lr_sweep(data, TEST_RULE)
    panels = _panels(fig)
    # Families in the paper's order nlu, nlg, ic; within one, tasks sorted.
    assert [ax.get_title() for ax in panels] == [
        "glue-rte (accuracy)", "glue-sst2 (accuracy)", "gsm8k (accuracy_strict)",
        "ic-dtd (accuracy)",
    ]  # fmt: skip
    rte, sst2, gsm8k, dtd = panels
    assert [len(_curves(ax)) for ax in panels] == [1, 2, 3, 1]
    assert all(ax.get_xscale() == "log" for ax in panels)
    dora = _curves(sst2)[0]
    assert list(dora.get_xdata()) == [1e-4, 1e-3]
    # sst2 dora: seeds 0.6/0.62 at 1e-4 and 0.8/0.82 at 1e-3 -> mean x100 (MetricSpec.percent).
    assert list(dora.get_ydata()) == pytest.approx([61.0, 81.0])
    assert sst2.get_shared_y_axes().joined(rte, sst2)
    assert not gsm8k.get_shared_y_axes().joined(rte, gsm8k)
    assert not dtd.get_shared_y_axes().joined(gsm8k, dtd)
    assert [ax.get_subplotspec().rowspan.start for ax in panels] == [0, 0, 1, 2]
    assert rte.get_ylabel() == "NLU: score (%)" and gsm8k.get_ylabel() == "NLG: score (%)"
    # One colour per configuration in every panel.
    colour = {line.get_label(): line.get_color() for ax in panels for line in _curves(ax)}
    for ax in panels:
        for line in _curves(ax):
            assert line.get_color() == colour[line.get_label()]
    legend = [t.get_text() for t in rte.get_legend().get_texts()]
    assert legend == ["dora", "lora", "pissa", "best lr (test rule)"]
    # Every line rings its chosen learning rate (the best mean here: 1e-3).
    rings = [line for line in sst2.get_lines() if line.get_label() == "_chosen"]
    assert [r.get_xdata()[0] for r in rings] == [1e-3, 1e-3]
    assert [r.get_ydata()[0] for r in rings] == pytest.approx([81.0, 71.0])


# ---- sensitivity --------------------------------------------------------------------------------

SENS_VALUES = {
    "train_size": (100, 200, 400),
    "batch_size": (16, 64, 256),
    "dropout": (0.0, 0.1),
    "lr": (1e-5, 5e-5, 1e-4, 1e-3),
}


@pytest.fixture(scope="module")
def sens_db(tmp_path_factory):
    db = ReportDB(tmp_path_factory.mktemp("sens") / "sens.db")
    seen = set()
    for variant in ("lora", "pissa"):
        offset = {"lora": 0.0, "pissa": 0.05}[variant]
        for field, values in SENS_VALUES.items():
            for value in values:
                config = {**BASE, field: value}
                if (variant, *config.values()) in seen:  # the base point is planned once
                    continue
                seen.add((variant, *config.values()))
                for seed in (0, 1):
                    # Scores encode (field, value) except at the base, which uses the lr ranks.
                    rank = SENS_VALUES[field].index(value)
                    if value == BASE[field]:
                        rank = SENS_VALUES["lr"].index(BASE["lr"])
                    score = 0.5 + offset + 0.01 * rank + 0.02 * seed
                    db.add({"task": "gsm8k", "variant": variant, "seed": seed, **config},
                           test={"accuracy_strict": [score - 0.2, score, score - 0.1]})  # fmt: skip
    # Varies two fields at once: belongs to no panel.
    db.add({"task": "gsm8k", "variant": "lora", **BASE, "dropout": 0.1, "lr": 1e-3},
           test={"accuracy_strict": [0.99]})  # fmt: skip
    # Another rank: its own line (one configuration per line), never pooled into rank 8's.
    db.add({"task": "gsm8k", "variant": "lora", **BASE, "rank": 16, "lr": 1e-3},
           test={"accuracy_strict": [0.99]})  # fmt: skip
    db.close()
    return db


def test_sensitivity_panels_members_and_means(sens_db):
    with sens_db.data() as data:
        fig = sensitivity_figure(data, TEST_RULE)
    panels = _panels(fig)
    assert [ax.get_xlabel() for ax in panels] == [
        "training data volume (samples)", "batch size", "dropout", "learning rate",
    ]  # fmt: skip
    assert [ax.get_xscale() for ax in panels] == ["log", "log", "linear", "log"]
    assert [[c.get_label() for c in _curves(ax)] for ax in panels] == [
        ["lora r=8", "pissa r=8"]] * 3 + [["lora r=16", "lora r=8", "pissa r=8"]]  # fmt: skip
    for ax, values in zip(panels, SENS_VALUES.values(), strict=True):
        for line in _curves(ax):
            if line.get_label() != "lora r=16":
                assert list(line.get_xdata()) == [float(v) for v in values]
    lr_panel = panels[3]
    lines = {line.get_label(): line for line in _curves(lr_panel)}
    # Mean of seeds 0 and 1 (best epoch is the middle one): 0.5 + 0.01 * rank + 0.01.
    assert list(lines["lora r=8"].get_ydata()) == pytest.approx([51.0, 52.0, 53.0, 54.0])
    assert list(lines["lora r=16"].get_xdata()) == [1e-3]
    assert list(lines["lora r=16"].get_ydata()) == pytest.approx([99.0])
    pissa = next(line for line in _curves(panels[2]) if line.get_label() == "pissa r=8")
    assert list(pissa.get_ydata()) == pytest.approx([57.0, 57.0])
    # The base value is marked in every panel (dotted vertical line).
    bases = [[line.get_xdata()[0] for line in ax.get_lines() if line not in _curves(ax)]
             for ax in panels]  # fmt: skip
    assert bases == [[100], [64], [0.0], [5e-5]]


def test_sensitivity_needs_one_task_and_a_varying_field(sens_db, tmp_path):
    db = ReportDB(tmp_path / "one.db")
    db.add({"task": "gsm8k", "variant": "lora", **BASE}, test={"accuracy_strict": [0.5]})
    db.add({"task": "glue-sst2", "variant": "lora", **BASE}, test={"accuracy": [0.5]})
    db.close()
    with db.data() as data:
        with pytest.raises(ValueError, match="pick a task"):
            sensitivity_figure(data, TEST_RULE)
        with pytest.raises(ValueError, match="varies"):
            sensitivity_figure(data.only(data.jobs["task"] == "gsm8k"), TEST_RULE)


# ---- overhead -----------------------------------------------------------------------------------

OVERHEAD = [  # (settings, train_seconds, peak_memory_mb) for seeds 0 and 1
    ({"variant": "lora"}, (100.0, 110.0), (2048.0, 2048.0)),
    ({"variant": "dora"}, (210.0, 210.0), (4096.0, 4096.0)),
    ({"variant": "lora", "adapter_checkpointing": True}, (150.0, 150.0), (1024.0, 1024.0)),
    ({"variant": "randlora", "variant_params": {"max_basis_dim": 4096}}, (315.0,), (3072.0,)),
]


@pytest.fixture(scope="module")
def overhead_db(tmp_path_factory):
    db = ReportDB(tmp_path_factory.mktemp("oh") / "oh.db")
    for settings, times, memories in OVERHEAD:
        for seed, (time, memory) in enumerate(zip(times, memories, strict=True)):
            db.add({"task": "gsm8k", "lr": 1e-4, "seed": seed, **settings},
                   summary={"train_seconds": time, "peak_memory_mb": memory,
                            "step_time_s": 9.0})  # fmt: skip
    db.add({"task": "gsm8k", "lr": 1e-4, "variant": "vera"}, state="queued")
    db.close()
    return db


def test_overhead_bars_labels_and_ratios(overhead_db):
    with overhead_db.data() as data:
        fig = overhead_figure(data)
    time_ax, memory_ax = _panels(fig)
    assert len(time_ax.patches) == len(memory_ax.patches) == 4
    labels = [t.get_text() for t in time_ax.get_yticklabels()]
    assert labels == ["lora", "dora", "lora †", "randlora max_basis_dim=4096"]
    assert [p.get_width() for p in time_ax.patches] == pytest.approx([105, 210, 150, 315])
    assert [p.get_width() for p in memory_ax.patches] == pytest.approx([2, 4, 1, 3])
    assert [t.get_text() for t in time_ax.texts] == [" 1.00×", " 2.00×", " 1.43×", " 3.00×"]
    assert [t.get_text() for t in memory_ax.texts] == [" 1.00×", " 2.00×", " 0.50×", " 1.50×"]
    assert time_ax.get_xlabel() == "training time (s)"
    assert memory_ax.get_xlabel() == "peak GPU memory (GiB)"
    colours = [p.get_facecolor() for p in time_ax.patches]
    assert colours[0] == colours[2] != colours[1]  # LoRA and LoRA † share LoRA's colour
    assert "†" in fig.get_suptitle()


def test_overhead_falls_back_to_step_time(overhead_db):
    with overhead_db.data() as data:
        summary = data.summary
        data.summary = summary[summary["metric"] != "train_seconds"]
        time_ax, _ = _panels(overhead_figure(data))
        assert time_ax.get_xlabel() == "training time (ms/step)"
        assert [p.get_width() for p in time_ax.patches] == pytest.approx([9000.0] * 4)
        data.summary = summary[summary["metric"] != "peak_memory_mb"]
        with pytest.raises(ValueError, match="peak_memory_mb"):
            overhead_figure(data)


# ---- files --------------------------------------------------------------------------------------


def test_every_figure_saves_png_and_svg(lr_db, sens_db, overhead_db, tmp_path):
    figures = {}
    with lr_db.data() as data:
        figures["lr-sweep"] = lr_sweep(data, TEST_RULE)
    with sens_db.data() as data:
        figures["sensitivity"] = sensitivity_figure(data, TEST_RULE)
    with overhead_db.data() as data:
        figures["overhead"] = overhead_figure(data)
    for name, fig in figures.items():
        png, svg = save_figure(fig, tmp_path, name, formats=("png", "svg"))
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
        assert b"<svg" in svg.read_bytes()[:1000] and svg.stat().st_size > 5000


# ---- loading from a database --------------------------------------------------------------------


def test_load_data_reads_every_config_field_and_the_summary(overhead_db, tmp_path):
    with overhead_db.data() as data:
        jobs = data.jobs
    assert {"train_size", "batch_size", "dropout", "adapter_checkpointing", "warmup_ratio",
            "schedule", "precision", "targets"} <= set(jobs.columns)  # fmt: skip
    assert jobs["variant_params"].tolist()[-2] == '{"max_basis_dim": 4096}'
    assert jobs["variant_params.max_basis_dim"].tolist()[-2] == 4096
    assert jobs["state"].tolist() == ["done"] * 7 + ["queued"]
    assert list(data.summary.columns) == ["job_id", "metric", "value"]
    assert len(data.summary) == 7 * 3
    out = tmp_path / "reports"
    for figure in ("overhead", "sensitivity", "lr-sweep"):
        result = CliRunner().invoke(
            app, ["report", "--db", str(overhead_db.path), "--figure", figure, "--format",
                  "png,svg", "--out", str(out)],
        )  # fmt: skip
        if figure == "sensitivity":  # nothing varies around the base point: one clear line
            assert result.exit_code == 2 and "varies" in result.output
            continue
        assert result.exit_code == 0, result.output
        for suffix in ("png", "svg"):
            assert (out / f"{figure}.{suffix}").stat().st_size > 0
