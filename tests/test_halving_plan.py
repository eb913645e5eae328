"""`plan --dry-run` of a halving sweep: expected epochs and GPU-hours against the full grid,
checked against sweeps worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorabench.api import plan
from lorabench.catalog.task import get_task_info
from lorabench.cli import app
from lorabench.config import resolve_job
from lorabench.search_cost import steps_per_epoch

LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
HALVING_STEPS = {"method": "halving", "eta": 3, "min_budget": 5, "unit": "steps"}
# bbc-news jobs as quickstart --full runs them: 320 examples at batch 16, 2 epochs = 40 steps.
BBC = {"task": "bbc-news", "lr": LRS, "train_size": 320, "epochs": 2, "max_length": 64}
# Paper Table II minutes x the NLU scale (0.05), per job.
LORA_HOURS, DORA_HOURS = 282 / 60 * 0.05, 559 / 60 * 0.05


def test_two_variants_two_seeds_of_quickstart_full_by_hand(tmp_path: Path):
    planned = plan({**BBC, "variant": ["lora", "dora"], "seed": [0, 1], "search": HALVING_STEPS},
                   dry_run=True, db=str(tmp_path / "x.db"))  # fmt: skip
    estimate = planned.search
    assert estimate is not None and planned.jobs == 28
    # Rungs end at steps 5, 15, 40; 7 learning rates: 7 x 5 + 2 x 10 + 1 x 25 = 80 of 7 x 40.
    # Per bracket (a variant, both seeds): 14 jobs x 2 epochs = 28 epochs, 2/7 of them expected.
    assert estimate.brackets == 2
    assert estimate.grid_epochs == 56
    assert estimate.expected_epochs == pytest.approx(16)
    assert estimate.grid_gpu_hours == pytest.approx(14 * LORA_HOURS + 14 * DORA_HOURS)
    assert estimate.grid_gpu_hours == pytest.approx(planned.gpu_hours)
    assert estimate.expected_gpu_hours == pytest.approx(2 / 7 * (14 * LORA_HOURS + 14 * DORA_HOURS))
    assert estimate.epoch_fraction == pytest.approx(2 / 7)
    assert len(estimate.assumptions) == 1  # synchronous halving only: the steps are known


def test_steps_per_epoch_from_the_catalogs_training_set_size(tmp_path: Path):
    # glue-rte, no train_size: 2,490 rows less 249 held out for select = 2,241, at batch 32:
    # 71 steps per epoch, 710 in 10 epochs. First rung 20 steps: rungs 20, 60, 180, 540, 710;
    # 7 lrs train 7 x 20 + 2 x 40 + 1 x 120 + 1 x 360 + 1 x 170 = 870 of 7 x 710 = 4,970.
    planned = plan({"task": "glue-rte", "variant": "lora", "lr": LRS,
                    "search": {**HALVING_STEPS, "min_budget": 20}},
                   dry_run=True, db=str(tmp_path / "x.db"))  # fmt: skip
    estimate = planned.search
    assert estimate is not None
    assert steps_per_epoch(resolve_job({"task": "glue-rte", "variant": "lora", "lr": 1e-4})) == 71
    assert (estimate.grid_epochs, estimate.expected_epochs) == (70, pytest.approx(870 / 71))
    assert estimate.expected_gpu_hours == pytest.approx(7 * LORA_HOURS * 870 / 4970)


def test_in_epochs_only_the_epochs_matter(tmp_path: Path):
    # paper-glue: 180 brackets (20 variants x 9 tasks) of 7 lrs x 10 epochs; rungs at epochs
    # 1, 3, 9, 10: 7 x 1 + 2 x 2 + 1 x 6 + 1 x 1 = 18 of 70 epochs per bracket.
    planned = plan(preset="paper-glue", search="halving", dry_run=True,
                   db=str(tmp_path / "x.db"))  # fmt: skip
    estimate = planned.search
    assert estimate is not None
    assert (estimate.brackets, estimate.grid_epochs) == (180, 12_600)
    assert estimate.expected_epochs == pytest.approx(12_600 * 18 / 70)
    assert estimate.expected_gpu_hours == pytest.approx(planned.gpu_hours * 18 / 70)


def test_unknown_steps_per_epoch_count_as_a_full_grid_and_say_so(tmp_path: Path):
    # humaneval-mini sets no train_size and the catalog does not know its size: a first rung
    # in steps of a job counted in epochs cannot be placed.
    planned = plan({"task": "humaneval-mini", "variant": "lora", "lr": [1e-4, 1e-3, 1e-2],
                    "search": HALVING_STEPS}, dry_run=True, db=str(tmp_path / "x.db"))  # fmt: skip
    estimate = planned.search
    assert estimate is not None
    assert estimate.expected_epochs == estimate.grid_epochs == 3
    assert any("unknown for humaneval-mini" in a for a in estimate.assumptions)
    # With max_steps the job's length is in steps too: known again.
    planned = plan({"task": "humaneval-mini", "variant": "lora", "lr": [1e-4, 1e-3, 1e-2],
                    "max_steps": 40, "search": HALVING_STEPS}, dry_run=True,
                   db=str(tmp_path / "x.db"))  # fmt: skip
    assert planned.search is not None
    assert planned.search.unknown_length == 3  # its epochs, though, are not known
    assert planned.search.grid_gpu_hours > planned.search.expected_gpu_hours
    assert any("left out of the epoch counts" in a for a in planned.search.assumptions)


def test_a_grid_has_no_search_estimate(tmp_path: Path):
    planned = plan({**BBC, "variant": "lora"}, dry_run=True, db=str(tmp_path / "x.db"))
    assert planned.search is None


def test_steps_per_epoch_counts_as_the_trainer_does():
    from sklearn.datasets import load_digits

    from lorabench.tasks.digits import split_indices
    from lorabench.train.loop import Schedule

    # The catalog's digits training part is the task's own (before select is carved).
    assert get_task_info("digits").train_rows == len(split_indices(load_digits().target)[0])
    cases = [({"task": "digits"}, 1293), ({"task": "digits", "train_size": 100}, 100),
             ({"task": "digits", "train_size": 5000}, 1293),
             ({"task": "digits", "select_split": False, "grad_accum": 3}, 1437),
             ({"task": "bbc-news", "train_size": 330, "batch_size": 16}, 330)]  # fmt: skip
    for fields, examples in cases:
        job = resolve_job({"variant": "lora", "lr": 1e-3, **fields})
        assert steps_per_epoch(job) == Schedule.for_job(job, examples).steps_per_epoch, fields


def test_the_dry_run_prints_the_estimate(tmp_path: Path):
    result = CliRunner().invoke(app, [
        "plan", "--task", "bbc-news", "--variant", "lora,dora", "--seed", "0,1",
        "--lr", ",".join(map(str, LRS)), "--train-size", "320", "--epochs", "2",
        "--search", "halving", "--min-budget", "5", "--budget-unit", "steps", "--dry-run",
        "--db", str(tmp_path / "x.db"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # as one line, whatever the console's width
    assert "GPU-hours: ~9.81 as a full grid" in text
    assert (
        "search halving (eta 3, first rung 5 steps), 2 bracket(s): expected ~16.0 of the "
        "full grid's 56.0 epochs (28.6%), ~2.8 of ~9.81 GPU-hours"
    ) in text
    assert "(expected as synchronous halving" in text
    assert not (tmp_path / "x.db").exists()
