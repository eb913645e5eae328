"""Successive halving in the queue: the promotion rule of asynchronous successive halving
(ASHA, Li et al. 2020), decided in the transaction that changes a bracket.

A bracket is the jobs of one sweep that differ only in learning rate and seed; its arms are its
learning rates, and the seeds of an arm move together: an arm's score at rung k is the mean of
its seeds' rung-k scores (the select split's primary metric), known once every seed still
alive (not failed or cancelled) has reported rung k. Why the mean: reports choose a learning
rate by its mean over seeds, so the search ranks what the report will rank, and one lucky seed
cannot carry its learning rate alone.

The rule, applied to every rung whenever the bracket changes (`settle`):
- asynchronous promotion: an arm that ranks in the top floor(n / eta) of the n arms that have
  reported rung k goes on to rung k + 1 at once (its seeds are queued again with the next
  budget, from their own checkpoints), so no worker waits for a rung to fill;
- a rung is complete when no arm can still report it; then, if none of its arms went on, the
  best one does (every bracket ends with one learning rate trained in full), and the arms still
  waiting there are stopped.
Ties rank the smaller learning rate first; a score that is not finite ranks last.

Every change to a bracket's jobs locks the bracket's row first (`lock_brackets`), so that on
PostgreSQL concurrent workers decide one after another, as SQLite's single writer does anyway.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from lorabench.store.models import Bracket, Job, Rung

GONE = ("failed", "cancelled")  # a seed in these states no longer counts for its arm


def lock_brackets(conn: Connection, bracket_ids: Iterable[int | None]) -> list[int]:
    """Lock these brackets' rows (ascending ids, so two transactions never wait on each other
    in a cycle); returns the ids. On SQLite the transaction already holds the write lock."""
    ids = sorted({i for i in bracket_ids if i is not None})
    if ids:
        query = select(Bracket.id).where(Bracket.id.in_(ids)).order_by(Bracket.id)
        conn.execute(query.with_for_update())
    return ids


def brackets_of(conn: Connection, condition) -> list[int]:  # noqa: ANN001
    """The brackets of the jobs `condition` selects."""
    query = select(Job.bracket_id).where(condition, Job.bracket_id.is_not(None)).distinct()
    return [row[0] for row in conn.execute(query)]


@dataclass
class _Seed:
    job_id: int
    arm: str
    rung: int
    state: str


@dataclass(frozen=True)
class Decision:
    promoted: tuple[tuple[str, int], ...]  # (arm, rung it goes on to)
    stopped: tuple[tuple[str, int], ...]  # (arm, rung it stopped at)


def settle(conn: Connection, bracket_id: int, now: float) -> Decision:
    """Apply the promotion rule to the bracket (its row locked by the caller)."""
    eta = conn.execute(select(Bracket.eta).where(Bracket.id == bracket_id)).scalar_one()
    seeds = [
        _Seed(*row)
        for row in conn.execute(
            select(Job.id, Job.arm, Job.rung, Job.state)
            .where(Job.bracket_id == bracket_id)
            .order_by(Job.id)
        )
    ]
    ids = [s.job_id for s in seeds]
    scores: dict[tuple[int, int], float] = {}
    for job_id, rung, score in conn.execute(
        select(Rung.job_id, Rung.rung, Rung.score).where(Rung.job_id.in_(ids))
    ):
        scores[(job_id, rung)] = -math.inf if score is None else score
    promoted, stopped = decide(seeds, scores, eta)
    by_arm = defaultdict(list)
    for seed in seeds:
        by_arm[seed.arm].append(seed.job_id)
    for arm, rung in promoted:
        conn.execute(
            update(Job)
            .where(Job.id.in_(by_arm[arm]), Job.state == "paused", Job.rung == rung - 1)
            # Each rung is a fresh segment with its own budget of attempts.
            .values(state="queued", rung=rung, attempts=0, worker_id=None, updated_at=now)
        )
    for arm, rung in stopped:
        conn.execute(
            update(Job)
            .where(Job.id.in_(by_arm[arm]), Job.state == "paused", Job.rung == rung)
            .values(state="stopped", finished_at=now, updated_at=now)
        )
    return Decision(tuple(promoted), tuple(stopped))


def decide(
    seeds: Sequence[_Seed], scores: dict[tuple[int, int], float], eta: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The rule on plain values (see the module docstring): which arms go on, which stop.
    `seeds` is changed as the decisions are taken (a promoted seed's rung and state)."""
    arms: dict[str, list[_Seed]] = defaultdict(list)
    for seed in seeds:
        arms[seed.arm].append(seed)
    promoted: list[tuple[str, int]] = []
    stopped: list[tuple[str, int]] = []
    top_rung = max((s.rung for s in seeds), default=0)
    for k in range(top_rung + 1):
        reported: dict[str, float] = {}
        pending = False
        for arm, members in arms.items():
            live = _live(members)
            if not live:
                continue
            if all((s.job_id, k) in scores for s in live):
                reported[arm] = sum(scores[(s.job_id, k)] for s in live) / len(live)
            elif not any(s.state == "stopped" for s in live):
                pending = True  # it may still report rung k
        ranked = sorted(reported, key=lambda arm: (-reported[arm], float(arm), arm))
        for arm in ranked[: len(ranked) // eta]:
            if _waiting(arms[arm], k):
                _promote(arms[arm], k, promoted)
        if pending or not ranked:
            continue
        went_on = any(_beyond(arms[arm], k) for arm in ranked)
        if not went_on:
            waiting_now = [arm for arm in ranked if _waiting(arms[arm], k)]
            if waiting_now:
                _promote(arms[waiting_now[0]], k, promoted)
        for arm in ranked:
            if _waiting(arms[arm], k):
                for seed in arms[arm]:
                    if seed.state == "paused" and seed.rung == k:
                        seed.state = "stopped"
                stopped.append((arm, k))
    return promoted, stopped


def _live(members: list[_Seed]) -> list[_Seed]:
    return [s for s in members if s.state not in GONE]


def _waiting(members: list[_Seed], k: int) -> bool:
    """Every live seed of the arm is paused at rung k, waiting for a decision."""
    live = _live(members)
    return bool(live) and all(s.state == "paused" and s.rung == k for s in live)


def _beyond(members: list[_Seed], k: int) -> bool:
    """The arm went on past rung k (or ended there in full: done)."""
    return any(s.rung > k or s.state == "done" for s in _live(members))


def _promote(members: list[_Seed], k: int, promoted: list[tuple[str, int]]) -> None:
    for seed in _live(members):
        seed.state, seed.rung = "queued", k + 1
    promoted.append((members[0].arm, k + 1))
