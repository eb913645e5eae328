"""What a training child tells its supervisor, and what the supervisor concludes on its own.

The child sends these through a multiprocessing queue (they are pickled): any number of
`Progress` and `Notice`, then exactly one final message, `Done`, `Failed`, `Stopped` or, for a
pack, `PackResults`. The supervisor adds the outcomes no child reports: `Cancelled`, `Crashed`,
`Lost`. Every job of a run ends with one `JobOutcome`. Nothing here imports torch: the
supervisor and the fork server's preload import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- sent by the child ---------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A progress event from the trainer (phase, epoch, step, loss ...), for a job's slot."""

    event: dict[str, Any]
    slot: int = 0  # the job's place in a pack; 0 for a single job


@dataclass(frozen=True)
class Notice:
    """A warning for the worker's console that does not end the job (a tracking backend that
    failed and was dropped)."""

    text: str


@dataclass(frozen=True)
class Done:
    """The job trained to its end."""

    metrics: list[tuple[str, str, int, int | None, float]]  # split, name, step, epoch, value
    outcomes: list[tuple[str, int, bytes]]  # split, epoch, encoded per-example outcomes
    resumed_from_step: int | None
    # A halving job: (step, select score, test score) at the end of its rung, and whether it
    # stopped there short of its full length (paused).
    rung: tuple[int, float, float] | None = None
    paused: bool = False


@dataclass(frozen=True)
class Failed:
    """The job raised: `transient` when running it again may pass."""

    transient: bool
    message: str


@dataclass(frozen=True)
class Stopped:
    """The job stopped when asked; its checkpoint is kept (None: the supervisor stopped it)."""

    step: int | None = None


@dataclass(frozen=True)
class PackResults:
    """One result per job of a pack, in the pack's order."""

    results: list[Done | Failed]


# --- concluded by the supervisor -----------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    """The job was cancelled (`lorabench cancel`) and stopped; its checkpoint is kept."""

    step: int | None = None


@dataclass(frozen=True)
class Crashed:
    """The child died without reporting a result."""

    exitcode: int | None


@dataclass(frozen=True)
class Lost:
    """The job's lease was lost: another worker may own the job now."""


ChildMessage = Progress | Notice | Done | Failed | Stopped | PackResults
Final = Done | Failed | Stopped | PackResults  # the child's last message
RunOutcome = Final | Cancelled | Crashed | Lost  # how one child's run ended
JobOutcome = Done | Failed | Stopped | Cancelled | Crashed | Lost  # how one job ended
