"""Successive halving vs the full grid (issue 20): does halving pick the grid's learning rate,
and for how much of the grid's training?

Per task, the same variants x learning rates run twice, each into its own SQLite database
under --out: as a full grid (grid.db) and as a halving sweep (halving.db: eta 3, first rung
--min-budget optimizer steps), each by one worker in this process (`lorabench.api.run_worker`,
on the CPU). Then, per variant: the grid's best learning rate and halving's, chosen by the
report's rule (`report --table lr`: best mean select score over seeds), whether halving's is
the grid's or statistically tied with it on the grid's own runs (the report's ≈: one-sided
paired bootstrap over the test examples, p >= 0.05), both test scores, and the optimizer steps
each trained (halving: each job's last rung step; grid: every job in full). The issue's
targets: the same or a tied learning rate for every variant, with <= 40% of the grid's training.

    python benchmarks/halving_vs_grid.py --out bench/halving [--tasks bbc-news,digits]
        [--variants lora,dora,pissa,lora-plus,lora-ga] [--lrs 1e-5,3e-5,...] [--eta 3]
        [--min-budget 5] [--skip-grid] [--quick]

bbc-news runs `quickstart --full`'s settings (40 steps per job: rungs end at steps 5, 15, 40);
digits its own defaults on 640 training images for 2 epochs (also 20 steps per epoch, 40 per
job). Each database is made afresh (and its runs folder emptied), except grid.db with
--skip-grid, which reuses a finished grid. --quick: the noop task, 2 variants x 4 learning
rates, 9 steps per job (rungs end at steps 2, 6, 9): the whole path in well under a minute.
Writes halving_vs_grid.md and halving_vs_grid.json into --out, and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench.cli.quickstart import FULL_SWEEP

# Per task, its sweep's fields besides variant and learning rate.
TASK_SETTINGS: dict[str, dict[str, list[Any]]] = {
    "bbc-news": {key: FULL_SWEEP[key]
                 for key in ("task", "seed", "epochs", "max_length", "train_size", "eval_size")},
    # The digits defaults (batch 32, cosine schedule, all 360 test and 144 select images
    # scored), on 640 training images for 2 epochs: 40 steps, as a bbc-news job. On 2 CPU cores
    # about 30 s per job, an estimate: a 20-step job took 97 s on a box loaded ~6x over.
    "digits": {"task": ["digits"], "seed": [0], "train_size": [640], "epochs": [2]},
    # One step per epoch (8 points, batch 8), 9 epochs: the worker path in milliseconds.
    "noop": {"task": ["noop"], "seed": [0], "epochs": [9]},
}  # fmt: skip
FULL = {"tasks": ["bbc-news", "digits"], "variants": FULL_SWEEP["variant"],
        "lrs": FULL_SWEEP["lr"], "min_budget": 5}  # fmt: skip
# The smoke configuration. Its first rung is 2 steps: after step 1 every learning rate still
# scores the same (the warm-up's first step has a learning rate of 0), and ties go to the
# smallest, so a 1-step rung would choose blindly.
QUICK = {"tasks": ["noop"], "variants": ["lora", "dora"], "lrs": [1e-3, 1e-2, 1e-1, 1.0],
         "min_budget": 2}  # fmt: skip
TARGET_FRACTION = 0.4  # issue 20: halving trains at most 40% of the grid's epochs
MODES = ("grid", "halving")
# As quickstart runs its worker: short leases and frequent checkpoints for jobs of seconds.
WORKER_OPTIONS = {"heartbeat_seconds": 5.0, "lease_seconds": 60.0, "checkpoint_every": 10}


@dataclass(frozen=True)
class Setup:
    out: Path
    tasks: list[str]
    variants: list[str]
    lrs: list[float]
    eta: int
    min_budget: int

    def db(self, mode: str) -> Path:
        return self.out / f"{mode}.db"

    def runs(self, mode: str) -> Path:
        return self.out / f"runs-{mode}"

    def search(self) -> dict[str, Any]:
        return {"method": "halving", "eta": self.eta, "min_budget": self.min_budget,
                "unit": "steps"}  # fmt: skip

    def sweep(self, task: str, mode: str) -> dict[str, Any]:
        sweep = {**TASK_SETTINGS[task], "name": f"{mode}-{task}", "variant": self.variants,
                 "lr": self.lrs}  # fmt: skip
        return {**sweep, "search": self.search()} if mode == "halving" else sweep


# --- running ------------------------------------------------------------------------------------


def check_rungs(setup: Setup) -> dict[str, list[int]]:
    """Each task's rung ends (optimizer steps), refusing a first rung as long as the job; and
    what halving is expected to cost (`plan --dry-run`'s estimate), printed."""
    from lorabench import api
    from lorabench.config import resolve_job
    from lorabench.search import SearchSpec, rung_steps
    from lorabench.search_cost import steps_per_epoch

    rungs = {}
    for task in setup.tasks:
        planned = api.plan(setup.sweep(task, "halving"), dry_run=True)
        job = resolve_job({**{k: v[0] for k, v in TASK_SETTINGS[task].items()},
                           "variant": setup.variants[0], "lr": setup.lrs[0]})  # fmt: skip
        per_epoch = steps_per_epoch(job)
        assert per_epoch is not None, "every benchmark task sets train_size or has a known size"
        total = job.max_steps or job.epochs * per_epoch
        rungs[task] = rung_steps(SearchSpec(**setup.search()), total_steps=total,
                                 steps_per_epoch=per_epoch)  # fmt: skip
        if len(rungs[task]) == 1:
            raise ValueError(f"--min-budget {setup.min_budget} steps is the whole {task} job "
                             f"({total} steps): halving would train every learning rate in "
                             "full; lower it")  # fmt: skip
        assert planned.search is not None
        print(f"{task}: {planned.jobs} jobs of {total} steps; halving's rungs end at steps "
              f"{', '.join(map(str, rungs[task]))}; expected (synchronous halving) "
              f"{planned.search.epoch_fraction:.1%} of the grid's training")  # fmt: skip
    return rungs


def fresh(setup: Setup, mode: str) -> None:
    """Remove `mode`'s database and runs folder: a job id of a new database must not find an
    old job's checkpoint, and timings are of a whole run."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{setup.db(mode)}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(setup.runs(mode), ignore_errors=True)


def run_mode(setup: Setup, mode: str) -> dict[str, float]:
    """Plan and run `mode`'s sweep of every task, one task after the other; wall seconds each."""
    from lorabench import api

    fresh(setup, mode)
    walls = {}
    for task in setup.tasks:
        sweep = setup.sweep(task, mode)
        api.plan(sweep, db=str(setup.db(mode)))
        started = time.perf_counter()
        api.run_worker(db=str(setup.db(mode)), gpu="cpu", sweep=sweep["name"],
                       runs_dir=setup.runs(mode), **WORKER_OPTIONS)  # fmt: skip
        walls[task] = time.perf_counter() - started
        print(f"{mode} {task}: {walls[task] / 60:.1f} min")
    return walls


def check_grid(setup: Setup) -> None:
    """--skip-grid: grid.db must hold every job of each task's grid, none still to run."""
    from sqlalchemy import select

    from lorabench.config import SweepSpec
    from lorabench.store import opened
    from lorabench.store.models import Job

    db = setup.db("grid")
    if not db.is_file():
        raise ValueError(f"--skip-grid: {db} does not exist; run once without --skip-grid")
    with opened(str(db), read_only=True) as engine, engine.connect() as conn:
        states = dict(conn.execute(select(Job.config_hash, Job.state)).all())
    for task in setup.tasks:
        hashes = [job.config_hash for job in SweepSpec.from_mapping(setup.sweep(task, "grid"))
                  .expand()]  # fmt: skip
        missing = [h for h in hashes if h not in states]
        unfinished = [states[h] for h in hashes if states.get(h) not in (None, "done", "failed")]
        if missing or unfinished:
            raise ValueError(
                f"--skip-grid: {db} lacks {len(missing)} and has {len(unfinished)} unfinished "
                f"of the {len(hashes)} {task} grid jobs these options plan; run without "
                "--skip-grid (or with the options the grid ran with)"
            )


# --- comparing ----------------------------------------------------------------------------------


@dataclass
class Side:
    """One mode's runs of a task, read by the report's own functions."""

    block: Any  # report.tables.lr.LrBlock
    labels: dict[int, str]  # job_id -> row (variant) label
    steps: dict[int, int]  # job_id -> optimizer steps it trained
    states: dict[int, str]  # job_id -> state


def read_side(engine: Any, sweep: str, task: str, mode: str) -> tuple[Side, Any]:
    """`sweep`'s lr block (cells, chosen lrs) and steps, and its Data, whose per-example
    outcomes are read on demand: the caller keeps `engine` open while it compares."""
    from lorabench.report.cells import display_scores
    from lorabench.report.configs import row_labels
    from lorabench.report.load import load_data
    from lorabench.report.select import Scoring
    from lorabench.report.tables.lr import AXES, lr_block

    scoring = Scoring()  # the report's defaults: best epoch and learning rate on select
    data = load_data(engine, sweep=sweep)
    jobs = data.jobs[data.jobs["task"] == task]
    block = lr_block(data, scoring, task, display_scores(data, scoring))
    ids = jobs["job_id"].astype(int)
    labels = dict(zip(ids, row_labels(jobs, AXES), strict=True))  # as lr_block labels rows
    states = dict(zip(ids, jobs["state"].astype(str), strict=True))
    if mode == "grid":  # every finished job trained its full length
        totals = data.summary[data.summary["metric"] == "total_steps"]
        steps = {int(j): int(v) for j, v in zip(totals["job_id"], totals["value"], strict=True)}
    else:  # a halving job trained to the end of the last rung it reported (`--table search`)
        last = data.rungs.groupby("job_id")["step"].max()
        steps = {int(j): int(v) for j, v in last.items()}
    steps = {job: steps.get(job, 0) for job in labels}
    return Side(block, labels, steps, states), data


def compare(setup: Setup, task: str, rungs: list[int], walls: dict[str, float | None]) -> dict:
    """The side-by-side rows of `task` (see the module docstring)."""
    from lorabench.store import opened

    with opened(str(setup.db("grid")), read_only=True) as grid_engine, \
            opened(str(setup.db("halving")), read_only=True) as halving_engine:  # fmt: skip
        grid, grid_data = read_side(grid_engine, f"grid-{task}", task, "grid")
        halving, _ = read_side(halving_engine, f"halving-{task}", task, "halving")
        rows = [compare_row(row, grid, halving, grid_data) for row in grid.block.block.rows]
    halving_total = sum(r["halving_steps"] for r in rows)
    grid_total = sum(r["grid_steps"] for r in rows)
    fraction = halving_total / grid_total if grid_total else math.nan
    good = [r for r in rows if r["verdict"] in ("same", "tied")]
    return {
        "task": task,
        "metric": grid.block.metric,
        "percent": grid.block.percent,
        "rungs": rungs,
        "rows": rows,
        "halving_steps": halving_total,
        "grid_steps": grid_total,
        "fraction": fraction,
        "wall_seconds": walls,
        "same_or_tied": len(good),
        "targets_met": len(good) == len(rows) and fraction <= TARGET_FRACTION,
    }


def compare_row(row: str, grid: Side, halving: Side, grid_data: Any) -> dict[str, Any]:
    """One variant: both chosen lrs and test scores, the tie test on the grid's runs, steps."""
    from lorabench.report.compare import paired_p_value
    from lorabench.report.configs import format_lr
    from lorabench.report.select import Scoring
    from lorabench.report.stats import ALPHA

    grid_lr, halving_lr = _chosen(grid, row), _chosen(halving, row)
    best = grid.block.block.cell(row, format_lr(grid_lr)) if grid_lr is not None else None
    p = math.nan
    if best is None or halving_lr is None:
        verdict = "no lr chosen"
    elif halving_lr == grid_lr:
        verdict = "same"
    else:  # the report's ≈: halving's lr not significantly worse on the grid's own runs
        other = grid.block.block.cell(row, format_lr(halving_lr))
        p, why = paired_p_value(grid_data, Scoring(), best, other)
        verdict = f"untested: {why}" if why else "tied" if p >= ALPHA else "worse"
    halving_steps = _sum(halving.steps, halving.labels, row)
    grid_steps = _sum(grid.steps, grid.labels, row)
    halving_cell = halving.block.block.cell(row, format_lr(halving_lr)) if halving_lr else None
    return {
        "variant": row,
        "grid_lr": grid_lr,
        "grid_test": best.mean if best else math.nan,
        "halving_lr": halving_lr,
        "halving_test": halving_cell.mean if halving_cell else math.nan,
        "verdict": verdict,
        "p_value": p,
        "halving_steps": halving_steps,
        "grid_steps": grid_steps,
        "fraction": halving_steps / grid_steps if grid_steps else math.nan,
        "halving_jobs": _count_states(halving, row),
        "grid_jobs": _count_states(grid, row),
    }


def _chosen(side: Side, row: str) -> float | None:
    chosen = side.block.chosen
    return float(chosen.at[row, "lr"]) if row in chosen.index else None


def _sum(values: dict[int, int], labels: dict[int, str], row: str) -> int:
    return sum(v for job, v in values.items() if labels[job] == row)


def _count_states(side: Side, row: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job, label in side.labels.items():
        if label == row:
            counts[side.states[job]] = counts.get(side.states[job], 0) + 1
    return dict(sorted(counts.items()))


# --- writing ------------------------------------------------------------------------------------


def markdown(result: dict, setup: Setup) -> str:
    from lorabench.report.configs import format_lr

    def lr(value: float | None) -> str:
        return "—" if value is None else format_lr(value)

    def score(value: float) -> str:
        return "—" if math.isnan(value) else f"{value:.2f}" if result["percent"] else f"{value:.4f}"

    rungs = ", ".join(map(str, result["rungs"]))
    lines = [
        f"### {result['task']}: {result['metric']}, full grid vs successive halving "
        f"(eta {setup.eta}, rungs end at steps {rungs})",
        "",
        "| variant | grid best lr | grid test | halving lr | halving test | same or tied | p "
        "| halving steps | grid steps | fraction |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for r in result["rows"]:
        p = "" if math.isnan(r["p_value"]) else f"{r['p_value']:.3f}"
        lines.append(
            f"| {r['variant']} | {lr(r['grid_lr'])} | {score(r['grid_test'])} | "
            f"{lr(r['halving_lr'])} | {score(r['halving_test'])} | {r['verdict']} | {p} | "
            f"{r['halving_steps']:,} | {r['grid_steps']:,} | {r['fraction']:.1%} |"
        )
    lines.append(
        f"| **all** | | | | | {result['same_or_tied']}/{len(result['rows'])} | | "
        f"{result['halving_steps']:,} | {result['grid_steps']:,} | {result['fraction']:.1%} |"
    )
    walls = result["wall_seconds"]
    wall = ", ".join(f"{mode} {_minutes(walls.get(mode))}" for mode in MODES)
    if walls.get("grid") and walls.get("halving"):
        wall += f" ({walls['halving'] / walls['grid']:.1%})"
    verdict = "met" if result["targets_met"] else "NOT met"
    lines += [
        "",
        f"Wall time: {wall}. Targets (same or tied lr for every variant, <= "
        f"{TARGET_FRACTION:.0%} of the grid's training steps): {verdict}.",
    ]
    return "\n".join(lines)


def _minutes(seconds: float | None) -> str:
    return "— (grid reused)" if seconds is None else f"{seconds / 60:.1f} min"


def report(setup: Setup, results: list[dict]) -> str:
    header = (
        f"Full grid vs successive halving: variants {', '.join(setup.variants)} x learning "
        f"rates {', '.join(f'{lr:g}' for lr in setup.lrs)}; one worker on the CPU each. "
        "Best lr: the report's rule (best mean select score over seeds); same or tied: "
        "halving's lr is the grid's best, or not significantly worse on the grid's runs "
        "(one-sided paired bootstrap over the test examples, p >= 0.05). Steps: optimizer "
        "steps trained (halving: each job up to its last rung; grid: every job in full)."
    )
    return "\n\n".join([header, *(markdown(result, setup) for result in results)]) + "\n"


# --- the command --------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> tuple[Setup, bool]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for databases and results")
    parser.add_argument("--tasks", help=f"comma-separated, of {', '.join(TASK_SETTINGS)}")
    parser.add_argument("--variants", help="comma-separated variant names")
    parser.add_argument("--lrs", help="comma-separated learning rates")
    parser.add_argument("--eta", type=int, default=3, help="each rung keeps the best 1/eta")
    parser.add_argument("--min-budget", type=int, help="the first rung, in optimizer steps")
    parser.add_argument("--skip-grid", action="store_true", help="reuse --out's finished grid.db")
    parser.add_argument("--quick", action="store_true", help="the noop smoke configuration")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    tasks = _names(args.tasks) or defaults["tasks"]
    unknown = [t for t in tasks if t not in TASK_SETTINGS]
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)}; choose from "
                     f"{', '.join(TASK_SETTINGS)}")  # fmt: skip
    try:
        lrs = [float(x) for x in _names(args.lrs)] or defaults["lrs"]
    except ValueError:
        parser.error(f"--lrs {args.lrs!r}: expected numbers separated by commas")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; it needs a folder")
    setup = Setup(args.out, tasks, _names(args.variants) or defaults["variants"], lrs,
                  args.eta, args.min_budget or defaults["min_budget"])  # fmt: skip
    return setup, args.skip_grid


def _no_nan(value: Any) -> Any:
    """NaN (no score, no p-value) as JSON null: NaN is not JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> dict:
    setup, skip_grid = parse(argv)
    setup.out.mkdir(parents=True, exist_ok=True)
    walls_file = setup.out / "grid-wall-seconds.json"
    try:
        rungs = check_rungs(setup)
        if skip_grid:
            check_grid(setup)
            grid_walls = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
        else:
            grid_walls = run_mode(setup, "grid")
            walls_file.write_text(json.dumps(grid_walls))
    except ValueError as error:  # a bad variant, lr or budget: the planner's message
        sys.exit(f"error: {error}")
    halving_walls = run_mode(setup, "halving")
    results = [
        compare(setup, task, rungs[task],
                {"grid": grid_walls.get(task), "halving": halving_walls[task]})
        for task in setup.tasks
    ]  # fmt: skip
    text = report(setup, results)
    print("\n" + text)
    (setup.out / "halving_vs_grid.md").write_text(text)
    summary = {"settings": {"variants": setup.variants, "lrs": setup.lrs, "eta": setup.eta,
                            "min_budget_steps": setup.min_budget,
                            "tasks": {t: TASK_SETTINGS[t] for t in setup.tasks}},
               "tasks": results}  # fmt: skip
    (setup.out / "halving_vs_grid.json").write_text(json.dumps(_no_nan(summary), indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
