"""benchmarks/halving_vs_grid.py end to end in its --quick configuration (the noop task): the
files it writes, their structure, and the steps arithmetic checked against the databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from lorabench.store import open_engine
from lorabench.store.models import Job, Sweep

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "halving_vs_grid.py"
LRS = [1e-3, 1e-2, 1e-1, 1.0]
RUNGS = [2, 6, 9]  # --quick: first rung 2 steps, eta 3, 9 steps per job


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def jobs(db: Path) -> list[tuple[str, float, str, int]]:
    """(variant, lr, state, rung) of every job."""
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(Job.config, Job.state, Job.rung).order_by(Job.id)).all()
        sweeps = conn.execute(select(Sweep.name)).scalars().all()
    engine.dispose()
    assert sweeps == [f"{db.stem}-noop"]
    return [(json.loads(c)["variant"], json.loads(c)["lr"], state, rung) for c, state, rung in rows]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    result = bench("--quick", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_quick_writes_both_databases_and_the_side_by_side_table(quick: Path):
    summary = json.loads((quick / "halving_vs_grid.json").read_text())
    assert summary["settings"] == {
        "variants": ["lora", "dora"], "lrs": LRS, "eta": 3, "min_budget_steps": 2,
        "tasks": {"noop": {"task": ["noop"], "seed": [0], "epochs": [9]}},
    }  # fmt: skip
    (result,) = summary["tasks"]
    assert (result["task"], result["metric"], result["rungs"]) == ("noop", "score", RUNGS)
    assert [row["variant"] for row in result["rows"]] == ["dora", "lora"]
    for row in result["rows"]:
        assert row["grid_lr"] in LRS and row["halving_lr"] in LRS
        assert row["verdict"] in ("same", "tied", "worse")
        # p is only tested where the learning rates differ; "same" has none.
        assert (row["p_value"] is None) == (row["verdict"] == "same")
        if row["verdict"] == "same":  # the winner trains as in the grid, step for step
            assert row["halving_test"] == pytest.approx(row["grid_test"], rel=1e-6)
        assert row["grid_jobs"] == {"done": 4}
        assert row["halving_jobs"]["done"] == 1  # one learning rate per bracket in full
        assert sum(row["halving_jobs"].values()) == 4
    assert set(result["wall_seconds"]) == {"grid", "halving"}
    assert all(seconds > 0 for seconds in result["wall_seconds"].values())
    assert isinstance(result["targets_met"], bool)
    table = (quick / "halving_vs_grid.md").read_text()
    assert (
        "### noop: score, full grid vs successive halving (eta 3, rungs end at steps 2, 6, 9)"
        in (table)
    )
    for row in result["rows"]:
        assert f"| {row['variant']} | " in table
    assert "| **all** |" in table and "Targets (same or tied lr for every variant" in table
    assert json.loads((quick / "grid-wall-seconds.json").read_text()).keys() == {"noop"}


def test_steps_are_what_each_job_trained(quick: Path):
    (result,) = json.loads((quick / "halving_vs_grid.json").read_text())["tasks"]
    # Grid: every job in full, 9 steps.
    grid = jobs(quick / "grid.db")
    assert sorted(lr for _, lr, _, _ in grid) == sorted(LRS * 2)
    # Halving: a job stopped at rung k, or done at the last, trained to the end of that rung.
    halving = jobs(quick / "halving.db")
    assert {state for _, _, state, _ in halving} == {"done", "stopped"}
    assert all(rung == len(RUNGS) - 1 for _, _, state, rung in halving if state == "done")
    for row in result["rows"]:
        ours = [
            (lr, state, rung) for variant, lr, state, rung in halving if variant == row["variant"]
        ]
        assert row["halving_steps"] == sum(RUNGS[rung] for _, _, rung in ours)
        assert row["grid_steps"] == 4 * 9
        assert row["fraction"] == pytest.approx(row["halving_steps"] / 36)
        (winner,) = [lr for lr, state, _ in ours if state == "done"]
        assert row["halving_lr"] == winner
        # Every learning rate trains rung 0; at least the winner goes on to the end.
        assert 4 * 2 + (6 - 2) + (9 - 6) <= row["halving_steps"] <= 4 * 9
    assert result["halving_steps"] == sum(r["halving_steps"] for r in result["rows"])
    assert result["grid_steps"] == 72
    assert result["fraction"] == pytest.approx(result["halving_steps"] / 72)


def test_skip_grid_refuses_a_grid_that_is_not_these_options(quick: Path, tmp_path: Path):
    other = bench("--quick", "--out", str(quick), "--skip-grid", "--lrs", "1e-3,2e-3")
    assert other.returncode == 1
    assert "lacks 2 and has 0 unfinished of the 4 noop grid jobs" in other.stderr
    missing = bench("--quick", "--out", str(tmp_path), "--skip-grid")
    assert missing.returncode == 1 and "does not exist; run once without" in missing.stderr
    bad = bench("--quick", "--out", str(tmp_path), "--tasks", "nope")
    assert bad.returncode == 2 and "--tasks: unknown nope; choose from" in bad.stderr
    whole = bench("--quick", "--out", str(tmp_path), "--min-budget", "9")
    assert whole.returncode == 1 and "--min-budget 9 steps is the whole noop job" in whole.stderr
