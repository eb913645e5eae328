"""Read the job database into the frames the report functions take. Never writes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, select

from lorabench.report.aggregate import EVAL_COLUMNS, JOBS_COLUMNS
from lorabench.store.models import Job, Metric, Sweep

# Config fields beyond JOBS_COLUMNS that the paper-layout tables and figures group by.
EXTRA_FIELDS = ("dropout", "train_size", "batch_size", "adapter_checkpointing", "variant_params")


def load_frames(engine: Engine, *, sweep: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(jobs, evals): every job with its state, and the eval rows of finished jobs."""
    data = load_data(engine, sweep=sweep)
    return data.jobs[JOBS_COLUMNS], data.evals


@dataclass
class Data:
    """Jobs (with every config field a table needs), eval rows and summary metrics."""

    jobs: pd.DataFrame
    evals: pd.DataFrame
    summary: pd.DataFrame  # job_id, metric, value (the last attempt's)

    def only(self, mask: pd.Series) -> Data:
        ids = set(self.jobs.loc[mask, "job_id"])
        return Data(
            self.jobs[mask],
            self.evals[self.evals["job_id"].isin(ids)],
            self.summary[self.summary["job_id"].isin(ids)],
        )


def load_data(engine: Engine, *, sweep: str | None = None) -> Data:
    """Read jobs, eval and summary metrics. Only SELECTs: the engine may be read-only."""
    job_query = select(Job.id, Sweep.name, Job.config, Job.group_hash, Job.state).join(
        Sweep, Sweep.id == Job.sweep_id
    )
    if sweep is not None:
        job_query = job_query.where(Sweep.name == sweep)
    metric_query = (
        select(Metric.job_id, Metric.split, Metric.attempt_id, Metric.epoch, Metric.name,
               Metric.value)
        .join(Job, Job.id == Metric.job_id)
        .where(Metric.split.in_(("eval", "summary")), Job.state == "done")
        .order_by(Metric.job_id, Metric.attempt_id, Metric.epoch)
    )  # fmt: skip
    with engine.connect() as conn:
        job_rows = conn.execute(job_query.order_by(Job.id)).all()
        metric_rows = conn.execute(metric_query).all()
    records = []
    for job_id, sweep_name, config, group_hash, state in job_rows:
        cfg = json.loads(config)
        record = {"job_id": job_id, "sweep": sweep_name, "group_hash": group_hash, "state": state}
        record.update({k: cfg.get(k) for k in JOBS_COLUMNS if k not in record})
        record.update({k: cfg.get(k) for k in EXTRA_FIELDS})
        record["variant_params"] = json.dumps(cfg.get("variant_params") or {}, sort_keys=True)
        records.append(record)
    jobs = pd.DataFrame.from_records(records, columns=[*JOBS_COLUMNS, *EXTRA_FIELDS])
    metrics = pd.DataFrame.from_records(
        metric_rows, columns=["job_id", "split", "attempt_id", "epoch", "metric", "value"]
    )
    evals = metrics[metrics["split"] == "eval"].merge(
        jobs.drop(columns="state"), on="job_id", how="inner"
    )[EVAL_COLUMNS]
    summary = metrics[metrics["split"] == "summary"]
    summary = summary.drop_duplicates(["job_id", "metric"], keep="last")[
        ["job_id", "metric", "value"]
    ]
    return Data(jobs, evals.reset_index(drop=True), summary.reset_index(drop=True))
