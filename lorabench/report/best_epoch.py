"""One job's metrics at its best epoch, chosen by the report's default rule (`select.Scoring()`:
the best epoch on the held-out select split by the task's select metric, the test split where
the job has none), for an export's model card."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, func, select

from lorabench.report.load import ROW_COLUMNS, Data, job_frame
from lorabench.report.select import Scoring, score_jobs
from lorabench.store.models import Job, Metric, Sweep


@dataclass(frozen=True)
class BestEpoch:
    epoch: int
    chosen_by: str  # "select" or "test"
    metric: str  # the metric that chose it
    test: dict[str, float]
    select: dict[str, float]


def best_epoch(engine: Engine, job_id: int) -> BestEpoch | None:
    """None when the job wrote no test metrics (not finished, or an unknown id)."""
    with engine.connect() as conn:
        job = conn.execute(
            select(Sweep.name, Job.config, Job.group_hash, Job.state)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Job.id == job_id)
        ).first()
        last = select(func.max(Metric.attempt_id)).where(Metric.job_id == job_id).scalar_subquery()
        rows = conn.execute(
            select(Metric.split, Metric.epoch, Metric.name, Metric.value).where(
                Metric.job_id == job_id,
                Metric.attempt_id == last,  # a job's metrics are its last attempt's
                Metric.split.in_(("eval", "select")),
            )
        ).all()
    if job is None:
        return None
    metrics = pd.DataFrame.from_records(
        [(job_id, split, epoch, name, value) for split, epoch, name, value in rows],
        columns=["job_id", "split", "epoch", "metric", "value"],
    )
    evals = metrics.loc[metrics["split"] == "eval", ROW_COLUMNS]
    selects = metrics.loc[metrics["split"] == "select", ROW_COLUMNS]
    jobs = job_frame([(job_id, job.name, json.loads(job.config), job.group_hash, job.state)])
    data = Data(jobs, evals, selects, pd.DataFrame(columns=["job_id", "metric", "value"]))
    scoring = Scoring()
    scored = score_jobs(data, scoring)
    if scored.empty:
        return None
    (picked,) = scored.itertuples()
    epoch = int(picked.epoch)
    task = str(jobs["task"].iloc[0])
    by_select = picked.by == "val"

    def at_epoch(frame: pd.DataFrame) -> dict[str, float]:
        here = frame[(frame["epoch"] == epoch) & frame["value"].notna()]
        return {str(m): float(v) for m, v in zip(here["metric"], here["value"], strict=True)}

    return BestEpoch(
        epoch=epoch,
        chosen_by="select" if by_select else "test",
        metric=scoring.select_metric(task) if by_select else scoring.test_metric(task),
        test=at_epoch(evals),
        select=at_epoch(selects),
    )
