"""Names a user types, checked against the rows: a sweep that is not there, a job id no job has.

A command that filters by a name the database does not hold would otherwise answer as if the
selection were merely empty ("no jobs", "cancelled 0 jobs"), which is false when there are
jobs: it must say the name is wrong instead (exit 2). Only SELECTs, so read-only engines serve.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, func, select

from lorabench.errors import StoreError
from lorabench.store.models import Job, Sweep
from lorabench.suggest import unknown_name

_CHUNK = 500  # ids per IN (...) list: SQLite's bound-parameter limit


class UnknownName(StoreError, ValueError):
    """A sweep or job the database does not hold; the message names it (and what is there).
    A ValueError too: to a caller of the Python API it is a wrong argument."""


def sweep_names(engine: Engine) -> list[str]:
    """Every sweep's name, in the order they were first planned."""
    with engine.connect() as conn:
        return list(conn.execute(select(Sweep.name).order_by(Sweep.id)).scalars())


def require_sweep(engine: Engine, name: str | None) -> None:
    """Raise UnknownName unless `name` (when given) is a sweep of this database."""
    if name is None:
        return
    names = sweep_names(engine)
    if name not in names:
        raise UnknownName(unknown_name("sweep", name, names, listed_as="sweeps in the database"))


def require_jobs(engine: Engine, job_ids: Iterable[int] | None) -> dict[int, str]:
    """Raise UnknownName naming every id in `job_ids` that no job has; else return the state
    of each named job (what `retry` and `cancel` say of the jobs they leave alone)."""
    wanted = sorted(set(job_ids or ()))
    states: dict[int, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            states.update(conn.execute(select(Job.id, Job.state).where(Job.id.in_(chunk))).all())
    missing = [job_id for job_id in wanted if job_id not in states]
    if missing:
        what = f"job with id {missing[0]}" if len(missing) == 1 else (
            "jobs with ids " + ", ".join(str(i) for i in missing))  # fmt: skip
        raise UnknownName(f"no {what}{_held(engine)}")
    return states


def _held(engine: Engine) -> str:
    """What ids exist: "; the database holds jobs 1-40" (or "; the database holds no jobs")."""
    with engine.connect() as conn:
        low, high, count = conn.execute(
            select(func.min(Job.id), func.max(Job.id), func.count())
        ).one()
    if not count:
        return "; the database holds no jobs"
    if count == high - low + 1:
        return (
            f"; the database holds jobs {low}-{high}" if high > low else f"; its one job is {low}"
        )
    return f"; the database holds {count} jobs between {low} and {high}"
