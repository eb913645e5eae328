"""A small job database with known rows for `results`, `jobs` and the API tests: four noop
jobs in two sweeps (done with select rows, done without, queued, failed), per-step train rows,
fixed times and attempt counts, all written through the store's models."""

from __future__ import annotations

from pathlib import Path

from report_db import ReportDB
from sqlalchemy import select, update
from sqlmodel import Session

from lorabench.store.models import Job, Metric

# job id -> created, started, finished (Unix seconds)
TIMES = {1: (100.0, 110.0, 150.0), 2: (101.0, 151.0, 190.0), 3: (102.0, None, None),
         4: (103.0, 191.0, 200.0)}  # fmt: skip
ATTEMPTS = {1: 1, 2: 2, 3: 0, 4: 3}
UPDATED = 1_000.0


def build_results_db(path: Path) -> Path:
    db = ReportDB(path)
    db.add({"task": "noop", "variant": "lora", "lr": 1e-3}, sweep="a",
           test={"score": [-0.5, -0.2]}, select_={"score": [-0.4, -0.3]},
           summary={"train_seconds": 1.5})  # fmt: skip
    db.add({"task": "noop", "variant": "lora-plus", "lr": 1e-2, "seed": 1,
            "variant_params": {"lr_ratio": 4.0}}, sweep="a",
           test={"score": [-0.1, -0.3]}, attempts=2)  # fmt: skip
    db.add({"task": "noop", "variant": "lora", "lr": 1e-4}, sweep="b", state="queued")
    db.add({"task": "noop", "variant": "dora", "lr": 1e-4}, sweep="b", state="failed")
    with Session(db.engine) as session:
        for job_id, (created, started, finished) in TIMES.items():
            session.execute(
                update(Job).where(Job.id == job_id).values(
                    created_at=created, started_at=started, finished_at=finished,
                    updated_at=UPDATED, attempts=ATTEMPTS[job_id], max_attempts=3,
                    error="boom: the loss diverged" if job_id == 4 else None,
                )
            )  # fmt: skip
        # Job 1's per-step loss, on its (only) attempt: the rows `results` adds to the report's.
        attempt_id = session.execute(
            select(Metric.attempt_id).where(Metric.job_id == 1).limit(1)
        ).scalar_one()
        for step, epoch, loss in ((5, 1, 0.9), (10, 2, 0.7)):
            session.add(Metric(job_id=1, attempt_id=attempt_id, split="train",
                               name="loss", step=step, epoch=epoch, value=loss))  # fmt: skip
        session.commit()
    db.close()
    return path
