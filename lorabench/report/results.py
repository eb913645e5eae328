"""Every job and every value it logged as one tidy table (`lorabench results`,
`lorabench.load_results`).

Tidy in the long sense: one row per observation, i.e. per job × split × step × metric, with the
job's columns (its state, attempts, times, every config field flattened, its chosen epoch)
repeated on each of its rows. Why long and not one row per job: per-step losses and per-epoch
scores have no fixed width (jobs differ in epochs and steps), so a wide table would need a
column per (split, epoch, metric) and still could not hold the loss curve; long rows go
straight into `groupby`, `pivot_table` and seaborn, and the one-row-per-job view is one filter
away (`df[df.best & (df.split == "test")]`, then `pivot` on `metric`).

Columns, in order:
- `job_id`, `sweep`, `state`, `attempts`, `max_attempts`;
- every config field (JobConfig's order; a field the stored config leaves out at its default,
  such as `select_split`, shows that default); `variant_params` and `task_params` flattened
  into one column per key (`variant_params.max_basis_dim`), `targets` comma-joined;
- `group_hash` (equal for the seeds of one configuration), `error`, `created`, `started`,
  `finished` (Unix seconds, the database's clock);
- `best_epoch`, `best_by`: the epoch the report scores the job at: the best on the held-out
  select split by the task's select metric (`best_by` "val"), or on the test split for a job
  without select rows (`best_by` "test"), as `report --select val` chooses;
- `split` (train | select | test | summary; stored as "eval", test is the reported split),
  `metric`, `step`, `epoch` (none on summary rows), `value` (NaN where the value was NaN/inf),
  `best` (a select or test row of the job's `best_epoch`).
A job without metric rows (queued, running, failed, cancelled; a halving job waiting at a rung)
has one row whose split, metric, step, epoch and value are missing, so every selected job
appears. A halving job `stopped` at a rung has the rows it measured up to there (its curve
is worth seeing; it has no summary and no `best_epoch`: its scores are not final).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from sqlalchemy import Engine, select

from lorabench.report.configs import field_values, job_fields, narrow
from lorabench.report.load import COMPOUND_FIELDS, META_COLUMNS, ids_in, load_data
from lorabench.report.select import Scoring, score_jobs
from lorabench.store import require_sweep
from lorabench.store.models import Job, Metric

SPLITS = ("train", "select", "test", "summary")
STORED = {"train": "train", "select": "select", "test": "eval", "summary": "summary"}
JOB_COLUMNS = ["job_id", "sweep", "state", "attempts", "max_attempts"]
TAIL_JOB_COLUMNS = ["group_hash", "error", "created", "started", "finished", "best_epoch",
                    "best_by"]  # fmt: skip
ROW_COLUMNS = ["split", "metric", "step", "epoch", "value", "best"]
_CHUNK = 500  # jobs per metric query


def parse_splits(splits: Iterable[str] | None) -> tuple[str, ...]:
    """The splits asked for (None: all), in SPLITS order; an unknown one is a ValueError."""
    if splits is None:
        return SPLITS
    asked = list(splits)
    if unknown := [s for s in asked if s not in SPLITS]:
        raise ValueError(f"--split {unknown[0]!r}: choose from {', '.join(SPLITS)}")
    return tuple(s for s in SPLITS if s in asked)


def load_results(
    engine: Engine,
    *,
    sweep: str | None = None,
    task: str | None = None,
    where: Sequence[str] = (),
    splits: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The tidy table (module docstring) of the jobs `sweep`, `task` and `where` select, as
    `report` selects them; `splits` limits the metric rows (per-step train rows are most)."""
    wanted = parse_splits(splits)
    require_sweep(engine, sweep)
    data = narrow(load_data(engine, sweep=sweep), task=task, where=where)
    jobs = _job_columns(engine, data.jobs)
    chosen = score_jobs(data, Scoring(select="val"))[["job_id", "epoch", "by"]]
    chosen = chosen.rename(columns={"epoch": "best_epoch", "by": "best_by"})
    chosen["job_id"] = chosen["job_id"].astype("int64")
    jobs = jobs.merge(chosen, on="job_id", how="left")
    jobs["best_epoch"] = jobs["best_epoch"].astype("Int64")
    rows = _metric_rows(engine, [int(i) for i in jobs["job_id"]], wanted)
    frame = jobs.merge(rows, on="job_id", how="left")
    frame["best"] = (
        (frame["split"].isin(("select", "test")) & (frame["epoch"] == frame["best_epoch"]))
        .fillna(False)
        .astype(bool)
    )
    order = {split: i for i, split in enumerate(SPLITS)}
    frame = frame.assign(_split=frame["split"].map(order))
    frame = frame.sort_values(["job_id", "_split", "step", "metric"], kind="stable",
                              na_position="first").drop(columns="_split")  # fmt: skip
    return frame.reset_index(drop=True)


def _job_columns(engine: Engine, jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per job: queue columns, config fields (flattened), then the job's tail columns."""
    fields = [f for f in job_fields() if f not in COMPOUND_FIELDS]
    flattened = [c for c in jobs.columns if c.split(".", 1)[0] in COMPOUND_FIELDS and "." in c]
    config = sorted([*fields, *flattened],
                    key=lambda c: (job_fields().index(c.split(".", 1)[0]), c))  # fmt: skip
    # Every field, those a stored config leaves out at their default included (field_values).
    jobs = jobs.assign(job_id=jobs["job_id"].astype("int64"),
                       **{f: field_values(jobs, f).infer_objects() for f in fields})  # fmt: skip
    ids = [int(i) for i in jobs["job_id"]]
    meta = pd.DataFrame.from_records(
        _queue_rows(engine, ids),
        columns=["job_id", "attempts", "max_attempts", "error", "created", "started", "finished"],
    )
    meta["job_id"] = meta["job_id"].astype("int64")
    merged = jobs[[*META_COLUMNS, *config]].merge(meta, on="job_id", how="left")
    for column in ("attempts", "max_attempts"):
        merged[column] = merged[column].astype("int64")
    for column in ("created", "started", "finished"):
        merged[column] = merged[column].astype("float64")
    head = [c for c in JOB_COLUMNS if c in merged.columns]
    tail = [c for c in TAIL_JOB_COLUMNS if c in merged.columns]
    return merged[[*head, *config, *tail]]


def _queue_rows(engine: Engine, ids: list[int]) -> list[tuple]:
    rows: list[tuple] = []
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            rows += conn.execute(
                select(Job.id, Job.attempts, Job.max_attempts, Job.error, Job.created_at,
                       Job.started_at, Job.finished_at)
                .where(ids_in(Job.id, ids[start : start + _CHUNK]))
            ).all()  # fmt: skip
    return rows


def _metric_rows(engine: Engine, ids: list[int], splits: Sequence[str]) -> pd.DataFrame:
    """The metric rows of finished (or halving-stopped) jobs among `ids`, their last attempt's
    (a job's metrics are written when it finishes), split names as the user knows them."""
    stored = {STORED[s]: s for s in splits}
    records: list[tuple] = []
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            records += conn.execute(
                select(Metric.job_id, Metric.attempt_id, Metric.split, Metric.name, Metric.step,
                       Metric.epoch, Metric.value)
                .join(Job, Job.id == Metric.job_id)
                .where(ids_in(Metric.job_id, ids[start : start + _CHUNK]),
                       Metric.split.in_(list(stored)), Job.state.in_(("done", "stopped")))
            ).all()  # fmt: skip
    rows = pd.DataFrame.from_records(
        records, columns=["job_id", "attempt_id", "split", "metric", "step", "epoch", "value"]
    )
    last = rows.groupby("job_id")["attempt_id"].transform("max")
    rows = rows[rows["attempt_id"] == last].drop(columns="attempt_id")
    rows["job_id"] = rows["job_id"].astype("int64")
    rows["split"] = rows["split"].map(stored)
    for column in ("step", "epoch"):
        rows[column] = rows[column].astype("Int64")
    rows["value"] = rows["value"].astype("float64")
    return rows[["job_id", *ROW_COLUMNS[:-1]]]
