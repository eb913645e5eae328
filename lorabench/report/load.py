"""Read the job database into the frames the report functions take. Never writes."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Engine, select

from lorabench.report.aggregate import EVAL_COLUMNS, JOBS_COLUMNS
from lorabench.store.models import Job, Metric, Sweep

_CONFIG_FIELDS = ("task", "model", "variant", "rank", "alpha", "lr", "seed")


def load_frames(engine: Engine, *, sweep: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(jobs, evals): every job with its state, and the eval rows of finished jobs."""
    job_query = select(Job.id, Sweep.name, Job.config, Job.group_hash, Job.state).join(
        Sweep, Sweep.id == Job.sweep_id
    )
    if sweep is not None:
        job_query = job_query.where(Sweep.name == sweep)
    with engine.connect() as conn:
        job_rows = conn.execute(job_query.order_by(Job.id)).all()
        eval_rows = conn.execute(
            select(Metric.job_id, Metric.epoch, Metric.name, Metric.value)
            .join(Job, Job.id == Metric.job_id)
            .where(Metric.split == "eval", Job.state == "done")
            .order_by(Metric.job_id, Metric.epoch)
        ).all()
    records = []
    for job_id, sweep_name, config, group_hash, state in job_rows:
        cfg = json.loads(config)
        records.append(
            {
                "job_id": job_id,
                "sweep": sweep_name,
                **{k: cfg[k] for k in _CONFIG_FIELDS},
                "group_hash": group_hash,
                "state": state,
            }
        )
    jobs = pd.DataFrame.from_records(records, columns=JOBS_COLUMNS)
    metrics = pd.DataFrame.from_records(eval_rows, columns=["job_id", "epoch", "metric", "value"])
    evals = metrics.merge(jobs.drop(columns="state"), on="job_id", how="inner")[EVAL_COLUMNS]
    return jobs, evals
