"""What successive halving did, per bracket (a configuration's learning rates and seeds): the
learning rate it chose and its test score, the training steps spent against a full grid's, and
where each learning rate ended.

The choice is the lr table's: among the learning rates trained in full (done jobs), the best
under the `--select` rule, scored the same way (`select.choose_lrs`, `cells.seed_cells`), so
the two tables agree. Steps spent: each job's steps to the end of the last rung it reported
(`rung.step`), summed; the grid's: the bracket's jobs x the full job length (`total_steps` of a
job trained in full, which every job of a bracket shares: learning rates do not change it).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from lorabench.report.blocks import decimals, require_jobs, score_notes
from lorabench.report.cells import GONE_STATES, Block, Cell, ReportTable, display_scores, seed_cells
from lorabench.report.configs import NothingToReport, format_lr, row_labels
from lorabench.report.load import Data
from lorabench.report.registry import register_table
from lorabench.report.select import Scoring, choose_lrs

AXES = ("task", "lr")
CHOSEN, STEPS, GRID_STEPS, SHARE = "chosen LR", "steps", "grid steps", "share (%)"
NOTES = (
    "chosen LR: among the learning rates trained in full, the lr table's best LR; beside it, "
    "its test score as in the lr table.",
    "steps: optimizer steps the bracket's jobs trained, each to the end of the last rung it "
    "reported (a job that failed before reporting one counts 0); grid steps: the bracket's "
    "jobs x the full job length; share = steps / grid steps.",
    "Per learning rate: full = trained to the full budget; rung k = stopped after rung k "
    "(rungs count from 0); training / paused (rung k) = still being searched; failed or "
    "cancelled = no seed left.",
)


@register_table("search", no_paper="the paper trained every learning rate in full (a grid)")
def search_table(data: Data, scoring: Scoring, compare: bool = False) -> ReportTable:
    """One block per task, a row per bracket (named by its configuration)."""
    require_jobs(data)
    data = data.only(data.jobs["job_id"].isin(set(data.halving["job_id"])))
    if data.jobs.empty:
        raise NothingToReport(
            "the selected jobs did not search their learning rates by successive halving (a "
            "grid sweep): `--table search` reports halving brackets; plan a sweep with "
            'search = "halving" (plan --search halving)'
        )
    scores = display_scores(data, scoring)
    blocks = [_task_block(data, scoring, task, scores)
              for task in sorted(data.jobs["task"].astype(str).unique())]  # fmt: skip
    notes = [*_search_notes(data), *NOTES, *score_notes(scoring, scores)]
    return ReportTable("search", "Successive halving per bracket", blocks, notes)


def _task_block(data: Data, scoring: Scoring, task: str, scores: pd.DataFrame) -> Block:
    jobs = data.jobs[data.jobs["task"] == task]
    jobs = jobs.assign(_label=row_labels(jobs, AXES), lr=jobs["lr"].astype(float))
    brackets = data.halving.set_index("job_id")
    jobs = jobs.assign(_bracket=jobs["job_id"].map(brackets["bracket_id"]),
                       _rung=jobs["job_id"].map(brackets["rung"]))  # fmt: skip
    # Two brackets may share a configuration's label (sweeps planned apart): name them apart.
    shared = jobs.groupby("_label")["_bracket"].nunique()
    lrs = sorted(set(jobs["lr"]))
    columns = [CHOSEN, scoring.test_metric(task), STEPS, GRID_STEPS, SHARE, *map(format_lr, lrs)]
    cells: dict[tuple[str, str], Cell] = {}
    for bracket, members in jobs.groupby("_bracket", sort=True):
        label = str(members["_label"].iloc[0])
        row = f"{label} (bracket {int(bracket)})" if shared[label] > 1 else label
        cells.update(_bracket_cells(data, scoring, row, members, scores, columns[1]))
    places = {columns[1]: decimals(scoring, task), STEPS: 0, GRID_STEPS: 0, SHARE: 1}
    rows = sorted({row for row, _ in cells})
    return Block(f"{task}: {scoring.test_metric(task)}", rows, columns, cells, places,
                 corner="variant")  # fmt: skip


def _bracket_cells(
    data: Data, scoring: Scoring, row: str, jobs: pd.DataFrame, scores: pd.DataFrame,
    score_column: str,
) -> dict[tuple[str, str], Cell]:  # fmt: skip
    task = str(jobs["task"].iloc[0])
    keyed = scores.merge(jobs[["job_id", "lr"]].assign(row=row), on="job_id")
    chosen = choose_lrs(
        keyed, select=scoring.select, higher_is_better=scoring.spec(task).higher_is_better,
        select_higher_is_better=scoring.spec(task, scoring.select_metric(task)).higher_is_better,
    )  # fmt: skip
    searching = jobs["state"].isin(("queued", "running", "paused")).any()
    pending = "searching" if searching else "no learning rate trained in full"
    cells = {(row, CHOSEN): Cell(label="—"), (row, score_column): Cell(pending=pending)}
    if row in chosen.index:
        lr = float(chosen.at[row, "lr"])
        at = jobs[jobs["lr"] == lr]
        seeds = seed_cells(at, pd.Series(row, index=at.index), at["lr"].map(format_lr), scores)
        cells[(row, CHOSEN)] = Cell(label=format_lr(lr))
        cells[(row, score_column)] = dataclasses.replace(seeds[(row, format_lr(lr))], mark="")
    spent, full = _steps(data, jobs)
    cells[(row, STEPS)] = Cell(float(spent), n=1)
    if full is not None:
        grid = len(jobs) * full
        cells[(row, GRID_STEPS)] = Cell(float(grid), n=1)
        cells[(row, SHARE)] = Cell(100.0 * spent / grid, n=1)
    for lr, arm in jobs.groupby("lr"):
        cells[(row, format_lr(float(lr)))] = Cell(label=arm_end(arm))
    return cells


def _steps(data: Data, jobs: pd.DataFrame) -> tuple[int, int | None]:
    """(steps the jobs trained, the full job length or None while no job has trained in full)."""
    rungs = data.rungs[data.rungs["job_id"].isin(set(jobs["job_id"]))]
    spent = int(rungs.groupby("job_id")["step"].max().sum()) if len(rungs) else 0
    done = set(jobs.loc[jobs["state"] == "done", "job_id"])
    summary = data.summary
    total = summary[summary["job_id"].isin(done) & (summary["metric"] == "total_steps")]
    if total["value"].notna().any():
        return spent, int(total["value"].max())
    # A done job's last rung ends at its full length (a database without the summary row).
    last = rungs[rungs["job_id"].isin(done)]
    return spent, (int(last["step"].max()) if len(last) else None)


def arm_end(arm: pd.DataFrame) -> str:
    """Where a learning rate's seeds (`_rung`: the rung each trains toward, waits at or ended
    at) are: "full", "rung k" (stopped there), "paused (rung k)", "training (rung k)",
    "failed" or "cancelled"."""
    states = arm["state"].astype(str)
    if (states == "done").any():
        return "full"
    live = arm[~states.isin(GONE_STATES)]
    if live.empty:
        return "failed" if (states == "failed").any() else "cancelled"
    rung = int(live["_rung"].max())
    if (live["state"] == "stopped").all():
        return f"rung {rung}"
    if (live["state"] == "paused").all():
        return f"paused (rung {rung})"
    return f"training (rung {rung})"


def _search_notes(data: Data) -> list[str]:
    notes = []
    for sweep in sorted(set(data.jobs["sweep"].astype(str))):
        search = data.searches.get(sweep)
        if search:
            budget = search["min_budget"]
            unit = search["unit"].removesuffix("s") if budget == 1 else search["unit"]
            eta = search["eta"]
            notes.append(f"sweep {sweep}: successive halving, eta {eta} (each rung keeps the "
                         f"best 1/{eta}), first rung {budget} {unit}.")  # fmt: skip
    return notes
