"""What a successive-halving sweep is expected to cost against its full grid (`plan --dry-run`).

Per bracket (the jobs that differ only in learning rate and seed), `search.expected_fraction` of
its arms (learning rates) gives the share of the grid's training it is expected to take; the
bracket's grid epochs and GPU-hours are scaled by that share. Where the rungs sit depends on
the job's steps per epoch only when the budget and the job's length are counted in different
units (a first rung in steps, a job in epochs, or the reverse); the steps per epoch then come
from the job's `train_size`, or else the catalog's size of the task's training set
(`TaskInfo.train_rows`, less the select split), as the trainer counts them (`train.loop.Schedule`).
A bracket whose steps per epoch stay unknown is counted as a full grid, and the estimate says so.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lorabench.catalog.task import get_task_info, select_size
from lorabench.config import JobConfig
from lorabench.search import SearchSpec, expected_fraction


@dataclass(frozen=True)
class SearchEstimate:
    """A halving sweep's expected training next to its full grid's: epochs (summed over jobs)
    and GPU-hours; `unknown_length`: jobs left out of the epoch counts (max_steps with steps per
    epoch unknown); `assumptions`: what the numbers take for granted, one sentence each."""

    search: SearchSpec
    brackets: int
    grid_epochs: float
    expected_epochs: float
    grid_gpu_hours: float
    expected_gpu_hours: float
    unknown_length: int = 0
    assumptions: tuple[str, ...] = ()

    @property
    def epoch_fraction(self) -> float:
        return self.expected_epochs / self.grid_epochs if self.grid_epochs else math.nan

    @property
    def gpu_hour_fraction(self) -> float:
        return self.expected_gpu_hours / self.grid_gpu_hours if self.grid_gpu_hours else math.nan


def steps_per_epoch(job: JobConfig) -> int | None:
    """Optimizer steps per epoch as `train.loop.Schedule.for_job` counts them, from the training
    examples the job draws (train_size, at most the task's pool where the catalog knows it);
    None when neither says how many."""
    rows = get_task_info(job.task).train_rows
    pool = None
    if rows is not None:
        pool = rows - select_size(rows) if job.select_split else rows
    examples = job.train_size if pool is None else min(job.train_size or pool, pool)
    if examples is None:
        return None
    return math.ceil(math.ceil(examples / job.batch_size) / job.grad_accum)


def bracket_fraction(search: SearchSpec, job: JobConfig, arms: int) -> float | None:
    """The share of its grid's steps a bracket of `arms` learning rates like `job` is expected
    to train; None when it depends on steps per epoch that are unknown."""
    if search.unit == "epochs" and job.max_steps is None:  # both in epochs
        return expected_fraction(search, arms, total_steps=job.epochs, per_epoch=1)
    if search.unit == "steps" and job.max_steps is not None:  # both in steps
        return expected_fraction(search, arms, total_steps=job.max_steps, per_epoch=1)
    per_epoch = steps_per_epoch(job)
    if per_epoch is None:
        return None
    total = job.max_steps if job.max_steps is not None else job.epochs * per_epoch
    return expected_fraction(search, arms, total_steps=total, per_epoch=per_epoch)


def job_epochs(job: JobConfig) -> float | None:
    """Epochs the job trains in a grid (a fraction where max_steps ends one early); None:
    max_steps with steps per epoch unknown."""
    if job.max_steps is None:
        return float(job.epochs)
    per_epoch = steps_per_epoch(job)
    return None if per_epoch is None else job.max_steps / per_epoch


def estimate_search(
    search: SearchSpec, jobs: Sequence[JobConfig], gpu_hours: Callable[[JobConfig], float]
) -> SearchEstimate:
    """The expected cost of running `jobs` under `search` (a halving search) against running
    them all in full; `gpu_hours` is one job's estimate in full (`cli.presets.job_gpu_hours`)."""
    brackets: dict[str, list[JobConfig]] = defaultdict(list)
    for job in jobs:
        brackets[job.bracket_hash].append(job)
    grid_epochs = expected_epochs = grid_hours = expected_hours = 0.0
    unknown_length = 0
    unknown_steps: set[str] = set()
    for members in brackets.values():
        first = members[0]
        fraction = bracket_fraction(search, first, len({job.arm for job in members}))
        if fraction is None:
            unknown_steps.add(first.task)
            fraction = 1.0
        hours = sum(gpu_hours(job) for job in members)
        grid_hours += hours
        expected_hours += fraction * hours
        epochs = job_epochs(first)  # the same for every job of the bracket
        if epochs is None:
            unknown_length += len(members)
        else:
            grid_epochs += epochs * len(members)
            expected_epochs += fraction * epochs * len(members)
    assumptions = [
        "expected as synchronous halving: rung k keeps max(1, floor(n / eta)) of "
        "its n learning rates; ASHA may promote a few more while results arrive"
    ]
    if unknown_steps:
        names = ", ".join(sorted(unknown_steps))
        assumptions.append(
            f"steps per epoch unknown for {names} (no train_size, and the catalog does not know "
            "the training set's size): those brackets are counted as a full grid; set "
            "train_size, or count min_budget in the unit of the job's length"
        )
    if unknown_length:
        assumptions.append(f"{unknown_length} job(s) with max_steps and unknown steps per epoch "
                           "are left out of the epoch counts")  # fmt: skip
    return SearchEstimate(search, len(brackets), grid_epochs, expected_epochs, grid_hours,
                          expected_hours, unknown_length, tuple(assumptions))  # fmt: skip
