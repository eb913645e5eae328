"""`lorabench status` on a successive-halving sweep: paused and stopped jobs in the state
counts, and per bracket and rung how many arms reported, went on, stopped, wait or train."""

from __future__ import annotations

from pathlib import Path

from halving_db import HalvingDB, finished_bracket
from rich.console import Console
from typer.testing import CliRunner

from lorabench.api import plan
from lorabench.cli import app
from lorabench.monitor import RungCounts, render_snapshot, take_snapshot
from lorabench.monitor.brackets import arm_place
from lorabench.monitor.view import rung_text
from lorabench.store import open_engine


def snapshot(path: str, sweep: str | None = None):  # noqa: ANN201
    engine = open_engine(path, read_only=True)
    try:
        return take_snapshot(engine, sweep=sweep)
    finally:
        engine.dispose()


def rendered(path: str) -> str:
    console = Console(record=True, width=220)
    console.print(render_snapshot(snapshot(path)))
    return console.export_text()


def test_an_arm_is_where_its_live_seeds_are():
    assert arm_place([(2, "done"), (2, "done")]) == (2, "done")
    assert arm_place([(0, "stopped"), (0, "failed")]) == (0, "stopped")  # failed: not counted
    assert arm_place([(1, "paused"), (1, "paused")]) == (1, "waiting")
    assert arm_place([(1, "paused"), (1, "running")]) == (1, "training")  # a seed still trains
    assert arm_place([(0, "failed"), (1, "cancelled")]) == (1, "gone")


def test_a_running_bracket_rung_by_rung(tmp_path: Path):
    db = HalvingDB(tmp_path / "h.db", [1e-3, 1e-2, 1e-1, 1.0])
    db.fail(1.0)
    db.rung(1e-3, 0, 0.5, 0.45)
    db.rung(1e-2, 0, 0.9, 0.8)
    running = db.claim(1e-1)
    snap = snapshot(db.path)
    (sweep,) = snap.sweeps
    assert sweep.counts == {"queued": 0, "running": 1, "paused": 2, "done": 0, "failed": 1,
                            "cancelled": 0, "stopped": 0}  # fmt: skip
    # Paused jobs may still go on: not finished, and they keep the sweep from "finished".
    assert (sweep.finished, sweep.remaining) == (1, 3)
    (bracket,) = snap.brackets
    assert (bracket.sweep, bracket.label, bracket.arms, bracket.searching) == (
        "hs", "noop lora", 4, True)  # fmt: skip
    assert bracket.rungs == (RungCounts(waiting=2, training=1, gone=1),)
    assert rung_text(bracket.rungs[0]) == "2 in: 2 waiting; 1 training; 1 failed/cancelled"

    # 1e-1 reports: 1e-2 (best of three) goes on to rung 1, 1e-3 and 1e-1 stop at rung 0.
    assert db.report(running, 0.7, 0.6) == "stopped"
    snap = snapshot(db.path)
    assert snap.sweeps[0].counts == {"queued": 1, "running": 0, "paused": 0, "done": 0,
                                     "failed": 1, "cancelled": 0, "stopped": 2}  # fmt: skip
    assert (snap.sweeps[0].finished, snap.sweeps[0].remaining) == (3, 1)
    assert snap.brackets[0].rungs == (RungCounts(on=1, stopped=2, gone=1),
                                      RungCounts(training=1))  # fmt: skip
    text = rendered(db.path)
    line = next(row for row in text.splitlines() if "noop lora" in row)
    assert "3 in: 1 on, 2 stopped; 1 failed/cancelled" in line and "1 training" in line
    db.close()


def test_a_finished_bracket_and_a_grid_sweep_beside_it(tmp_path: Path):
    db = finished_bracket(tmp_path / "h.db")
    db.close()
    plan({"task": "noop", "variant": "lora", "lr": [1e-3], "name": "grid"}, db=db.path)
    snap = snapshot(db.path)
    grid, halving = snap.sweeps
    assert "paused" not in grid.counts and "stopped" not in grid.counts  # a grid cannot
    assert halving.counts["stopped"] == 4 and halving.counts["done"] == 2
    assert (halving.finished, halving.remaining) == (8, 0)
    (bracket,) = snap.brackets
    assert not bracket.searching
    # Two seeds per arm, one arm per learning rate: 1e-2 went on twice and finished.
    assert [rung_text(r) for r in bracket.rungs] == [
        "3 in: 1 on, 2 stopped; 1 failed/cancelled", "1 in: 1 on", "1 in: 1 done"]  # fmt: skip
    text = rendered(db.path)
    header = next(row for row in text.splitlines() if "queued" in row)
    assert "paused" in header and "stopped" in header
    grid_row = next(row for row in text.splitlines() if row.startswith("│ grid"))
    assert grid_row.split("│")[4].strip() == "-"  # the grid sweep's paused column
    assert "halving brackets" in text
    # --sweep grid: no halving sweep, no bracket table, no paused/stopped columns.
    only_grid = CliRunner().invoke(app, ["status", "--sweep", "grid", "--db", db.path])
    assert only_grid.exit_code == 0, only_grid.output
    assert "halving brackets" not in only_grid.output and "paused" not in only_grid.output


def test_many_brackets_list_the_searching_ones_first(tmp_path: Path):
    path = tmp_path / "h.db"
    plan({"task": "noop", "variant": "lora", "lr": [1e-3, 1e-2], "rank": list(range(1, 13)),
          "epochs": 9, "search": "halving", "name": "many"}, db=str(path))  # fmt: skip
    text = rendered(str(path))
    lines = [row for row in text.splitlines() if "noop lora" in row]
    assert len(lines) == 10  # BRACKETS_SHOWN
    assert "+2 more (2 searching)" in text
