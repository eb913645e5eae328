"""Read the job database into the frames the report works on. Only SELECTs: the engine may be
read-only.

Every field of a job's stored config becomes a column (not a fixed list), so that any field in
which two jobs differ can be found and shown (`configs.varying_fields`). Dict fields
(`variant_params`, `task_params`) are kept as sorted JSON and also flattened, one column per key
("variant_params.max_basis_dim"); `targets` becomes one comma-joined string.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, inspect, select

from lorabench.outcomes import decode_outcomes
from lorabench.store.models import Job, Metric, Outcome, Rung, Sweep

META_COLUMNS = ("job_id", "sweep", "group_hash", "state")
COMPOUND_FIELDS = ("variant_params", "task_params")
ROW_COLUMNS = ["job_id", "epoch", "metric", "value"]
SUMMARY_COLUMNS = ["job_id", "metric", "value"]
HALVING_COLUMNS = ["job_id", "bracket_id", "arm", "rung"]
RUNG_COLUMNS = ["job_id", "rung", "step", "score", "test_score"]
# Outcome reads go in chunks of this many jobs (SQLite's bound-parameter limit).
_CHUNK = 500

OutcomeKey = tuple[int, int]  # (job_id, epoch)
Outcomes = dict[str, np.ndarray]


class OutcomeSource(Protocol):
    def read(self, keys: Iterable[OutcomeKey]) -> dict[OutcomeKey, Outcomes]: ...


class StaticOutcomes:
    """Outcomes held in memory (tests, or none at all)."""

    def __init__(self, outcomes: Mapping[OutcomeKey, Outcomes] | None = None) -> None:
        self._outcomes = dict(outcomes or {})

    def read(self, keys: Iterable[OutcomeKey]) -> dict[OutcomeKey, Outcomes]:
        return {key: self._outcomes[key] for key in keys if key in self._outcomes}


class OutcomeReader:
    """Per-example outcomes of the test split, read on demand while the engine is open: only the
    chosen epochs of the compared jobs are ever needed, and all of them could be large."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[OutcomeKey, Outcomes] = {}
        # A database from before the outcome table (schema < 3) is opened read-only and never
        # upgraded, so the table may be missing: then there are no outcomes.
        self._present = inspect(engine).has_table(Outcome.__tablename__)

    def read(self, keys: Iterable[OutcomeKey]) -> dict[OutcomeKey, Outcomes]:
        wanted = {(int(j), int(e)) for j, e in keys}
        missing = sorted(wanted - set(self._cache))
        if missing and self._present:
            jobs = sorted({j for j, _ in missing})
            for start in range(0, len(jobs), _CHUNK):
                self._load(jobs[start : start + _CHUNK], set(missing))
        return {key: self._cache[key] for key in wanted if key in self._cache}

    def _load(self, job_ids: list[int], wanted: set[OutcomeKey]) -> None:
        query = (
            select(Outcome.job_id, Outcome.epoch, Outcome.data)
            .where(Outcome.split == "eval", Outcome.job_id.in_(job_ids))
            .order_by(Outcome.job_id, Outcome.epoch, Outcome.attempt_id)
        )
        with self._engine.connect() as conn:
            for job_id, epoch, data in conn.execute(query):
                if (job_id, epoch) in wanted:  # later attempts overwrite earlier ones
                    self._cache[(job_id, epoch)] = decode_outcomes(data)


@dataclass
class Data:
    """Jobs (meta columns and every config field), per-epoch test and select rows of finished
    jobs (the last attempt's), their summary metrics, and where per-example outcomes come from."""

    jobs: pd.DataFrame
    evals: pd.DataFrame  # job_id, epoch, metric, value: split "eval", the task's test split
    selects: pd.DataFrame  # the same for split "select" (held out to choose epochs and lrs)
    summary: pd.DataFrame  # job_id, metric, value
    outcomes: OutcomeSource = field(default_factory=StaticOutcomes)
    # Successive halving (empty for grid sweeps): per halving job its bracket, arm and the rung
    # it trains toward, waits at or ended at; every rung result the jobs reported, paused and
    # stopped jobs included (their rung scores are all that is known of them); and the search
    # of each sweep that searched by halving (sweep name -> the stored JSON, parsed).
    halving: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HALVING_COLUMNS))
    rungs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RUNG_COLUMNS))
    searches: dict[str, dict] = field(default_factory=dict)

    def only(self, mask: pd.Series) -> Data:
        ids = set(self.jobs.loc[mask, "job_id"])

        def keep(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["job_id"].isin(ids)]

        return Data(
            self.jobs[mask], keep(self.evals), keep(self.selects), keep(self.summary),
            self.outcomes, keep(self.halving), keep(self.rungs), self.searches,
        )  # fmt: skip


def job_frame(rows: Iterable[tuple[int, str, Mapping, str, str]]) -> pd.DataFrame:
    """Jobs from (job_id, sweep, config, group_hash, state) tuples, one column per config field."""
    records = []
    for job_id, sweep, config, group_hash, state in rows:
        record: dict[str, object] = {"job_id": job_id, "sweep": sweep, "group_hash": group_hash,
                                     "state": state}  # fmt: skip
        for name, value in config.items():
            if name in COMPOUND_FIELDS:
                value = value or {}
                record[name] = json.dumps(value, sort_keys=True)
                for key, item in value.items():
                    record[f"{name}.{key}"] = _scalar(item)
            elif isinstance(value, list | tuple):
                record[name] = ",".join(str(v) for v in value)
            else:
                record[name] = value
        for name in COMPOUND_FIELDS:
            record.setdefault(name, "{}")
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=[*META_COLUMNS, "task", "variant", "lr", "seed"])
    return frame


def _scalar(value: object) -> object:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def ids_in(column, ids: list[int]):  # noqa: ANN001, ANN201
    """`column IN (ids)` with the ids written into the SQL: any number of them fits SQLite's
    bound-parameter limit (they are integers, so nothing needs quoting)."""
    return column.in_(bindparam(f"{column.key}_ids", ids, expanding=True, literal_execute=True))


def load_data(
    engine: Engine, *, sweep: str | None = None, job_ids: Collection[int] | None = None
) -> Data:
    """Read jobs (of `sweep`, of `job_ids`, or all), their test/select rows and summary
    metrics, and what successive halving recorded; outcomes are read later, on demand."""
    job_query = select(Job.id, Sweep.name, Job.config, Job.group_hash, Job.state).join(
        Sweep, Sweep.id == Job.sweep_id
    )
    if sweep is not None:
        job_query = job_query.where(Sweep.name == sweep)
    wanted: list[int] | None = None
    if job_ids is not None:
        # A few jobs (`lorabench jobs`): read only their rows.
        wanted = sorted({int(i) for i in job_ids})
        job_query = job_query.where(ids_in(Job.id, wanted))
    metric_query = (
        select(Metric.job_id, Metric.split, Metric.attempt_id, Metric.epoch, Metric.name,
               Metric.value)
        .join(Job, Job.id == Metric.job_id)
        .where(Metric.split.in_(("eval", "select", "summary")), Job.state == "done")
        .order_by(Metric.job_id, Metric.attempt_id, Metric.epoch)
    )  # fmt: skip
    if wanted is not None:
        metric_query = metric_query.where(ids_in(Metric.job_id, wanted))
    with engine.connect() as conn:
        job_rows = conn.execute(job_query.order_by(Job.id)).all()
        metric_rows = conn.execute(metric_query).all()
        halving, rungs, searches = _halving_rows(conn, sweep, wanted)
    jobs = job_frame((i, s, json.loads(c), g, st) for i, s, c, g, st in job_rows)
    metrics = pd.DataFrame.from_records(
        metric_rows, columns=["job_id", "split", "attempt_id", "epoch", "metric", "value"]
    )
    # Only the last attempt's rows count (a job's metrics are written once, when it finishes).
    last = metrics.groupby("job_id")["attempt_id"].transform("max")
    metrics = metrics[metrics["attempt_id"] == last]
    metrics = metrics[metrics["job_id"].isin(set(jobs["job_id"]))]

    def split(name: str) -> pd.DataFrame:
        return metrics.loc[metrics["split"] == name, ROW_COLUMNS].reset_index(drop=True)

    summary = metrics[metrics["split"] == "summary"].drop_duplicates(
        ["job_id", "metric"], keep="last"
    )
    return Data(
        jobs.reset_index(drop=True),
        split("eval"),
        split("select"),
        summary[SUMMARY_COLUMNS].reset_index(drop=True),
        OutcomeReader(engine),
        halving,
        rungs,
        searches,
    )


def _halving_rows(
    conn: Connection, sweep: str | None, job_ids: list[int] | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The halving jobs (HALVING_COLUMNS), their rung results (RUNG_COLUMNS) and the halving
    sweeps' searches, of `sweep` or `job_ids` when given."""
    scope = [Sweep.name == sweep] if sweep is not None else []
    if job_ids is not None:
        scope.append(ids_in(Job.id, job_ids))
    jobs = conn.execute(
        select(Job.id, Job.bracket_id, Job.arm, Job.rung)
        .join(Sweep, Sweep.id == Job.sweep_id)
        .where(Job.bracket_id.is_not(None), *scope)
        .order_by(Job.id)
    ).all()
    rungs = conn.execute(
        select(Rung.job_id, Rung.rung, Rung.step, Rung.score, Rung.test_score)
        .join(Job, Job.id == Rung.job_id)
        .join(Sweep, Sweep.id == Job.sweep_id)
        .where(*scope)
        .order_by(Rung.job_id, Rung.rung)
    ).all()
    query = select(Sweep.name, Sweep.search).where(Sweep.search.is_not(None))
    if sweep is not None:
        query = query.where(Sweep.name == sweep)
    searches = {name: json.loads(text) for name, text in conn.execute(query)}
    return (
        pd.DataFrame.from_records(jobs, columns=HALVING_COLUMNS),
        pd.DataFrame.from_records(rungs, columns=RUNG_COLUMNS),
        searches,
    )
