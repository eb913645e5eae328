"""Successive-halving brackets at a glance: per rung, where a bracket's arms (its learning
rates) are. Pure data, read from the job rows alone: an arm's seeds move together, so the
rung and state of its seeds say what it did at every rung up to theirs (store.halving).

Per rung k, an arm now past k went `on`; an arm whose seeds are at k is `done` (trained in
full: k is its last rung), `stopped` (it lost rung k), `waiting` (it reported k, paused for the
decision), `training` (queued or running toward k) or `gone` (every seed failed or was
cancelled there). `reported` = on + done + stopped + waiting.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select

from lorabench.store.models import Job, Sweep

GONE = ("failed", "cancelled")  # seeds that no longer count for their arm


@dataclass(frozen=True)
class RungCounts:
    on: int = 0
    done: int = 0
    stopped: int = 0
    waiting: int = 0
    training: int = 0
    gone: int = 0

    @property
    def reported(self) -> int:
        return self.on + self.done + self.stopped + self.waiting


@dataclass(frozen=True)
class BracketProgress:
    id: int
    sweep: str
    label: str  # "task variant" of its jobs
    arms: int
    rungs: tuple[RungCounts, ...]  # rung 0 up to the highest an arm reached

    @property
    def searching(self) -> bool:
        return any(r.waiting or r.training for r in self.rungs)


def read_brackets(conn: Connection, scope: list) -> list[BracketProgress]:
    """The brackets of the sweeps `scope` selects (conditions on Sweep), by id."""
    rows = conn.execute(
        select(Job.bracket_id, Sweep.name, Job.config, Job.arm, Job.rung, Job.state)
        .join(Sweep, Sweep.id == Job.sweep_id)
        .where(Job.bracket_id.is_not(None), *scope)
        .order_by(Job.bracket_id, Job.id)
    ).all()
    seeds: dict[int, list] = defaultdict(list)
    for row in rows:
        seeds[row.bracket_id].append(row)
    return [_bracket(bracket_id, members) for bracket_id, members in seeds.items()]


def _bracket(bracket_id: int, members: list) -> BracketProgress:
    config = json.loads(members[0].config)
    arms: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in members:
        arms[row.arm].append((row.rung, row.state))
    places = [arm_place(seeds) for seeds in arms.values()]
    top = max(rung for rung, _ in places)
    counts = [defaultdict(int) for _ in range(top + 1)]
    for rung, where in places:
        for k in range(rung):
            counts[k]["on"] += 1
        counts[rung][where] += 1
    return BracketProgress(
        id=bracket_id,
        sweep=members[0].name,
        label=f"{config['task']} {config['variant']}",
        arms=len(arms),
        rungs=tuple(RungCounts(**c) for c in counts),
    )


def arm_place(seeds: Iterable[tuple[int, str]]) -> tuple[int, str]:
    """(rung, where) of an arm from its seeds' (rung, state)."""
    seeds = list(seeds)
    live = [(rung, state) for rung, state in seeds if state not in GONE]
    if not live:
        return max(rung for rung, _ in seeds), "gone"
    rung = max(r for r, _ in live)
    states = {state for _, state in live}
    if "done" in states:
        return rung, "done"
    if states == {"stopped"}:
        return rung, "stopped"
    if states == {"paused"}:
        return rung, "waiting"
    return rung, "training"
