"""Reporting: score selection, seed aggregation, table rendering and figures, on hand-made data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lorabench.report.aggregate import (
    LrGrid,
    format_cell,
    format_lr,
    job_scores,
    lr_grid,
)
from lorabench.report.figures import lr_sweep_figure, save_figure
from lorabench.report.render import long_form, markdown_table, rich_table, write_table

LRS = (1e-4, 3e-4, 1e-3)
# (variant, lr, seed) -> accuracy at epochs 1, 2, 3 (finished jobs only).
ACC = {
    ("lora", 1e-4, 0): [0.80, 0.82, 0.81],  # best epoch 2, not the last
    ("lora", 1e-4, 1): [0.78, 0.83, 0.84],
    ("lora", 3e-4, 0): [0.85, 0.88, 0.86],  # best epoch 2
    ("lora", 3e-4, 1): [0.86, 0.87, 0.91],
    ("lora", 1e-3, 0): [0.70, 0.75, 0.74],  # single finished seed (seed 1 failed)
    ("dora", 1e-4, 0): [0.81, 0.84, 0.85],
    ("dora", 1e-4, 1): [0.83, 0.86, 0.84],
    ("dora", 3e-4, 0): [0.87, 0.91, 0.90],
    ("dora", 3e-4, 1): [0.88, 0.89, 0.93],
}
UNFINISHED = {
    ("lora", 1e-3, 1): "failed",
    ("dora", 1e-3, 0): "queued",
    ("dora", 1e-3, 1): "running",
}
SQRT_2E4 = 0.01414213562373095  # sample std of two values 0.02 apart
SQRT_45E5 = 0.021213203435596427  # sample std of two values 0.03 apart
SQRT_5E5 = 0.007071067811865475  # sample std of two values 0.01 apart


def _job(job_id: int, task: str, variant: str, lr: float, seed: int) -> dict:
    return {
        "job_id": job_id,
        "sweep": "s1",
        "task": task,
        "model": "minilm",
        "variant": variant,
        "rank": 8,
        "alpha": 16.0,
        "lr": lr,
        "seed": seed,
        "group_hash": f"{variant}-{lr:g}",
    }


def make_frames(task: str = "sst2", first_id: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    evals, jobs = [], []
    job_id = first_id
    for (variant, lr, seed), values in ACC.items():
        job = _job(job_id, task, variant, lr, seed)
        jobs.append({**job, "state": "done"})
        for epoch, value in enumerate(values, start=1):
            evals.append({**job, "epoch": epoch, "metric": "accuracy", "value": value})
            # A second metric with larger values: selection must filter by metric.
            evals.append({**job, "epoch": epoch, "metric": "loss", "value": 10.0 + epoch})
        job_id += 1
    for (variant, lr, seed), state in UNFINISHED.items():
        jobs.append({**_job(job_id, task, variant, lr, seed), "state": state})
        job_id += 1
    return pd.DataFrame(evals), pd.DataFrame(jobs)


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_frames()


@pytest.fixture
def grid(frames) -> LrGrid:
    evals, jobs = frames
    return lr_grid(evals, jobs, "accuracy")


def test_job_scores_best_epoch(frames):
    evals, _ = frames
    scores = job_scores(evals, "accuracy")
    assert len(scores) == 9
    assert list(scores.columns) == [
        "job_id", "sweep", "task", "model", "variant", "rank", "alpha", "lr", "seed",
        "group_hash", "score", "epoch",
    ]  # fmt: skip
    assert scores["score"].tolist() == [0.82, 0.84, 0.88, 0.91, 0.75, 0.85, 0.86, 0.91, 0.93]
    assert scores["epoch"].tolist() == [2, 3, 2, 3, 2, 3, 2, 2, 3]
    first = scores.iloc[0]
    assert (first["job_id"], first["variant"], first["lr"], first["seed"]) == (1, "lora", 1e-4, 0)


def test_job_scores_last_epoch(frames):
    evals, _ = frames
    scores = job_scores(evals, "accuracy", rule="last")
    assert scores["score"].tolist() == [0.81, 0.84, 0.86, 0.91, 0.74, 0.85, 0.84, 0.90, 0.93]
    assert scores["epoch"].tolist() == [3] * 9


def test_job_scores_lower_is_better_and_ties_take_earliest_epoch(frames):
    evals, _ = frames
    assert job_scores(evals, "loss", higher_is_better=False)["score"].tolist() == [11.0] * 9
    assert job_scores(evals, "loss", higher_is_better=False)["epoch"].tolist() == [1] * 9
    tied = evals[evals["job_id"] == 1].assign(value=0.5)
    assert job_scores(tied, "accuracy")["epoch"].tolist() == [1]


def test_job_scores_rejects_unknown_metric_and_rule(frames):
    evals, _ = frames
    with pytest.raises(ValueError, match=r"'f1'.*metrics present: accuracy, loss"):
        job_scores(evals, "f1")
    with pytest.raises(ValueError, match="rule"):
        job_scores(evals, "accuracy", rule="mean")


def test_lr_grid_statistics(grid):
    assert grid.variants == ["dora", "lora"]
    assert grid.lrs == [1e-4, 3e-4, 1e-3]
    assert grid.task == "sst2"
    assert grid.mean.loc["lora"].tolist()[:2] == pytest.approx([0.83, 0.895])
    assert grid.mean.at["lora", 1e-3] == pytest.approx(0.75)
    assert grid.mean.loc["dora"].tolist()[:2] == pytest.approx([0.855, 0.92])
    assert math.isnan(grid.mean.at["dora", 1e-3])
    assert grid.std.at["lora", 1e-4] == pytest.approx(SQRT_2E4)
    assert grid.std.at["lora", 3e-4] == pytest.approx(SQRT_45E5)
    assert grid.std.at["dora", 1e-4] == pytest.approx(SQRT_5E5)
    assert grid.std.at["dora", 3e-4] == pytest.approx(SQRT_2E4)
    assert math.isnan(grid.std.at["lora", 1e-3])  # one seed: no std
    assert grid.n.loc["lora"].tolist() == [2, 2, 1]
    assert grid.n.loc["dora"].tolist() == [2, 2, 0]
    # Only cells without any finished score describe their unfinished jobs.
    assert grid.pending.loc["dora"].tolist() == ["", "", "1 queued, 1 running"]
    assert grid.pending.loc["lora"].tolist() == ["", "", ""]


def test_lr_grid_last_rule(frames):
    evals, jobs = frames
    grid = lr_grid(evals, jobs, "accuracy", rule="last")
    assert grid.mean.at["lora", 1e-4] == pytest.approx(0.825)
    assert grid.std.at["lora", 1e-4] == pytest.approx(SQRT_45E5)
    assert grid.mean.at["lora", 1e-3] == pytest.approx(0.74)


def test_lr_grid_pending_states_and_lr_only_in_jobs(frames):
    evals, jobs = frames
    extra = [
        {**_job(50, "sst2", "lora", 3e-3, 0), "state": "failed"},
        {**_job(51, "sst2", "lora", 3e-3, 1), "state": "cancelled"},
        {**_job(52, "sst2", "lora", 3e-3, 2), "state": "queued"},
    ]
    grid = lr_grid(evals, pd.concat([jobs, pd.DataFrame(extra)]), "accuracy")
    assert grid.lrs == [1e-4, 3e-4, 1e-3, 3e-3]
    assert grid.pending.at["lora", 3e-3] == "1 queued, 1 failed, 1 cancelled"
    assert grid.pending.at["dora", 3e-3] == ""
    assert grid.n.at["dora", 3e-3] == 0


def test_lr_grid_requires_single_task(frames):
    evals, jobs = frames
    evals2, jobs2 = make_frames(task="mnli", first_id=100)
    with pytest.raises(ValueError, match="--task"):
        lr_grid(pd.concat([evals, evals2]), pd.concat([jobs, jobs2]), "accuracy")


def test_lr_grid_with_nothing_finished(frames):
    _, jobs = frames
    empty = pd.DataFrame(columns=[*jobs.columns.drop("state"), "epoch", "metric", "value"])
    grid = lr_grid(empty, jobs, "accuracy")
    assert grid.n.to_numpy().sum() == 0
    assert grid.pending.at["lora", 1e-4] == "2 done without score"
    assert grid.pending.at["lora", 1e-3] == "1 failed, 1 done without score"
    assert grid.pending.at["dora", 1e-3] == "1 queued, 1 running"


def test_format_cell():
    assert format_cell(0.8531, 0.0042, 3, "", percent=True) == "85.31 ± 0.42"
    assert format_cell(0.8531, float("nan"), 1, "", percent=True) == "85.31"
    assert format_cell(0.8531, 0.0042, 1, "", percent=True) == "85.31"
    assert format_cell(float("nan"), float("nan"), 0, "2 queued", percent=True) == "— (2 queued)"
    assert format_cell(float("nan"), float("nan"), 0, "", percent=True) == "—"
    assert format_cell(0.4231, 0.01, 2, "", percent=False) == "0.4231 ± 0.0100"


def test_format_lr():
    assert [format_lr(x) for x in (1e-4, 3e-4, 1e-3, 2.5e-4, 0.01)] == [
        "1e-04", "3e-04", "1e-03", "2.5e-04", "1e-02",
    ]  # fmt: skip


def test_markdown_table(grid):
    text = markdown_table(grid, title="SST-2 accuracy", percent=True)
    lines = text.splitlines()
    assert lines[0] == "# SST-2 accuracy"
    assert lines[2] == "| variant | 1e-04 | 3e-04 | 1e-03 | best LR |"
    assert lines[3] == "|:--|--:|--:|--:|--:|"
    assert (
        lines[4]
        == "| dora | **85.50 ± 0.71** | **92.00 ± 1.41** | — (1 queued, 1 running) | 3e-04 |"
    )
    assert lines[5] == "| lora | 83.00 ± 1.41 | 89.50 ± 2.12 | **75.00** | 3e-04 |"
    assert "ddof=1" in text


def test_markdown_bolds_ties_and_lower_is_better(grid):
    mean = grid.mean.copy()
    mean.at["dora", 3e-4] = 0.895  # same displayed value as lora's 89.50
    tied = LrGrid(mean=mean, std=grid.std, n=grid.n, pending=grid.pending)
    lines = markdown_table(tied, title="t", percent=True).splitlines()
    assert "**89.50 ± 1.41**" in lines[4] and "**89.50 ± 2.12**" in lines[5]
    low = markdown_table(grid, title="t", percent=True, higher_is_better=False).splitlines()
    assert low[4] == "| dora | 85.50 ± 0.71 | 92.00 ± 1.41 | — (1 queued, 1 running) | 1e-04 |"
    assert low[5] == "| lora | **83.00 ± 1.41** | **89.50 ± 2.12** | **75.00** | 1e-03 |"


def test_write_table_files_and_csv_round_trip(grid, tmp_path):
    out = tmp_path / "new" / "dir"
    paths = write_table(grid, out, "sst2_accuracy", title="SST-2", percent=True)
    assert paths == [out / "sst2_accuracy.md", out / "sst2_accuracy.csv"]
    assert paths[0].read_text(encoding="utf-8") == markdown_table(grid, title="SST-2", percent=True)
    back = pd.read_csv(paths[1])
    back["pending"] = back["pending"].fillna("")
    assert list(back.columns) == ["variant", "lr", "mean", "std", "n", "pending"]
    assert len(back) == 6
    pd.testing.assert_frame_equal(back, long_form(grid), check_dtype=False)
    row = back[(back["variant"] == "lora") & (back["lr"] == 3e-4)].iloc[0]
    assert (row["mean"], row["std"], row["n"]) == (
        pytest.approx(0.895),
        pytest.approx(SQRT_45E5),
        2,
    )
    missing = back[(back["variant"] == "dora") & (back["lr"] == 1e-3)].iloc[0]
    assert math.isnan(missing["mean"]) and missing["n"] == 0
    assert missing["pending"] == "1 queued, 1 running"


def test_rich_table(grid):
    table = rich_table(grid, title="SST-2", percent=True)
    assert [c.header for c in table.columns] == ["variant", "1e-04", "3e-04", "1e-03", "best LR"]
    cells = [[str(cell) for cell in column.cells] for column in table.columns]
    assert cells[1] == ["85.50 ± 0.71", "83.00 ± 1.41"]
    assert cells[3] == ["— (1 queued, 1 running)", "75.00"]
    assert cells[4] == ["3e-04", "3e-04"]
    assert [c.style for c in table.columns[3].cells] == ["dim", "bold"]


def test_lr_sweep_figure_and_save(grid, tmp_path):
    evals2, jobs2 = make_frames(task="mnli", first_id=100)
    evals2 = evals2[evals2["variant"] == "lora"]
    jobs2 = jobs2[jobs2["variant"] == "lora"]
    grids = {"sst2": grid, "mnli": lr_grid(evals2, jobs2, "accuracy")}
    fig = lr_sweep_figure(grids, metric="accuracy", percent=True)
    assert len(fig.axes) == 2
    first, second = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["sst2", "mnli"]
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    assert [line.get_label() for line in first.get_lines()] == ["dora", "lora"]
    assert [line.get_label() for line in second.get_lines()] == ["lora"]
    dora, lora = first.get_lines()
    assert list(dora.get_xdata()) == [1e-4, 3e-4]  # missing 1e-3 cell skipped
    assert list(dora.get_ydata()) == pytest.approx([85.5, 92.0])
    assert list(lora.get_xdata()) == [1e-4, 3e-4, 1e-3]
    assert list(lora.get_ydata()) == pytest.approx([83.0, 89.5, 75.0])
    # Error bars only where a std exists: dora 2 cells, lora 2 cells (1e-3 has a single seed).
    assert len(first.containers) == 2
    segments = [len(c.lines[2][0].get_segments()) for c in first.containers]
    assert segments == [2, 2]
    assert first.get_ylabel() == "accuracy (%)" and first.get_xlabel() == "learning rate"
    assert [t.get_text() for t in first.get_legend().get_texts()] == ["dora", "lora"]
    assert first.get_shared_y_axes().joined(first, second)
    assert (
        fig.get_figwidth()
        > lr_sweep_figure({"sst2": grid}, metric="a", percent=True).get_figwidth()
    )

    paths = save_figure(fig, tmp_path / "figs", "sweep", formats=("png", "svg"))
    assert paths == [tmp_path / "figs" / "sweep.png", tmp_path / "figs" / "sweep.svg"]
    png = paths[0].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert paths[1].stat().st_size > 0


def test_lr_sweep_figure_requires_grids():
    with pytest.raises(ValueError):
        lr_sweep_figure({}, metric="accuracy", percent=True)
