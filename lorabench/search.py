"""How a sweep searches its learning rates: a full grid, or successive halving (ASHA).

Successive halving (Jamieson & Talwalkar 2016; asynchronous: Li et al. 2020, "ASHA") trains
every learning rate of a bracket for a small budget, then continues only the best 1/eta of
them to the next rung, eta times longer, up to the job's full length. The promotion rule
itself lives in the queue (`store.halving`); this module says where the rungs are.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SearchSpec(BaseModel):
    """A sweep's `search`: "grid" (every job in full, the default) or "halving".

    Halving: `eta` (each rung keeps the best 1/eta), `min_budget` (the first rung's length, in
    `unit`: "epochs" or "steps"). The last rung is the job's own length (`epochs`, or
    `max_steps`): a learning rate that wins every rung is trained exactly as in a grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["grid", "halving"] = "grid"
    eta: int = Field(3, ge=2, le=100)
    min_budget: int = Field(1, gt=0, le=2**31 - 1)
    unit: Literal["epochs", "steps"] = "epochs"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _options_need_halving(self) -> SearchSpec:
        options = sorted(self.model_fields_set & {"eta", "min_budget", "unit"})
        if self.method == "grid" and options:
            raise ValueError(
                f"{' and '.join(options)} {'applies' if len(options) == 1 else 'apply'} only to "
                "successive halving: add --search halving "
                '(search = {method = "halving", ...} in a sweep file)'
            )
        return self

    @property
    def halving(self) -> bool:
        return self.method == "halving"

    def stored(self) -> dict[str, Any] | None:
        """What the queue keeps for the workers (None: a grid)."""
        return self.model_dump() if self.halving else None


GRID = SearchSpec()


def rung_steps(search: SearchSpec, *, total_steps: int, steps_per_epoch: int) -> list[int]:
    """The optimizer step at which each rung ends: min_budget * eta**k while shorter than the
    job, then the job's last step (as Ray Tune's ASHA places its milestones). A grid, or a
    first rung as long as the job, has one rung: the whole job."""
    per_unit = steps_per_epoch if search.unit == "epochs" else 1
    rungs = []
    if search.halving:
        budget = search.min_budget
        while budget * per_unit < total_steps:
            rungs.append(budget * per_unit)
            budget *= search.eta
    return [*rungs, total_steps]


def expected_fraction(search: SearchSpec, arms: int, *, total_steps: int, per_epoch: int) -> float:
    """The share of a full grid's training steps a bracket of `arms` learning rates is expected
    to take: rung k trains max(1, floor(n_k / eta)) arms on from rung k - 1 (synchronous
    halving; ASHA may promote a few more while results are still arriving)."""
    rungs = rung_steps(search, total_steps=total_steps, steps_per_epoch=per_epoch)
    steps, alive, done = 0, arms, 0
    for k, end in enumerate(rungs):
        if k > 0:
            alive = max(1, math.floor(alive / search.eta))
        steps += alive * (end - done)
        done = end
    return steps / (arms * total_steps)
