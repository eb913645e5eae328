"""Synthetic job databases for the report tests, written row by row with the store's models:
jobs in any state, per-epoch test ("eval") and select rows, summary metrics and per-example
outcomes, exactly as the training side stores them."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlmodel import Session, select

from lorabench.config import resolve_job
from lorabench.outcomes import encode_outcomes
from lorabench.report.load import Data, load_data
from lorabench.store import open_engine, opened
from lorabench.store.models import Attempt, Job, Metric, Outcome, Sweep, Worker

PerEpoch = Mapping[str, Sequence[float | None]]  # metric -> value per epoch (1, 2, ...)


class ReportDB:
    """A SQLite database under construction; ``add`` writes one job with what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.engine = open_engine(str(self.path), create=True)
        with Session(self.engine) as session:
            worker = Worker(host="h", pid=1, device="cpu", started_at=0.0, heartbeat_at=0.0)
            session.add(worker)
            session.commit()
            self.worker_id = worker.id

    def _sweep(self, session: Session, name: str) -> int:
        found = session.exec(select(Sweep).where(Sweep.name == name)).first()
        if found is None:
            found = Sweep(name=name, spec="{}", created_at=time.time())
            session.add(found)
            session.flush()
        return found.id

    def add(
        self,
        config: Mapping,
        *,
        sweep: str = "s",
        state: str = "done",
        test: PerEpoch | None = None,
        select_: PerEpoch | None = None,
        outcomes: Mapping[int, Mapping[str, Sequence]] | None = None,
        summary: Mapping[str, float] | None = None,
        attempts: int = 1,
    ) -> int:
        """Write one job; metrics go to its last attempt (earlier ones get a decoy row)."""
        job_config = resolve_job(dict(config))
        now = time.time()
        with Session(self.engine) as session:
            job = Job(
                sweep_id=self._sweep(session, sweep), config_hash=job_config.config_hash,
                group_hash=job_config.group_hash, config=job_config.canonical_json(),
                state=state, created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(job)
            session.flush()
            attempt_ids = []
            for number in range(1, attempts + 1):
                attempt = Attempt(
                    job_id=job.id, worker_id=self.worker_id, number=number,
                    lease_token=f"t{number}", outcome="done", started_at=now,
                )  # fmt: skip
                session.add(attempt)
                session.flush()
                attempt_ids.append(attempt.id)
            last = attempt_ids[-1]
            for attempt_id in attempt_ids[:-1]:  # an earlier attempt's rows never count
                session.add(Metric(job_id=job.id, attempt_id=attempt_id, split="eval",
                                   name="accuracy", step=0, epoch=1, value=-1.0))  # fmt: skip
            for split, rows in (("eval", test or {}), ("select", select_ or {})):
                for name, values in rows.items():
                    for epoch, value in enumerate(values, start=1):
                        session.add(Metric(job_id=job.id, attempt_id=last, split=split, name=name,
                                           step=epoch * 10, epoch=epoch, value=value))  # fmt: skip
            for name, value in (summary or {}).items():
                session.add(Metric(job_id=job.id, attempt_id=last, split="summary", name=name,
                                   step=0, value=value))  # fmt: skip
            for epoch, arrays in (outcomes or {}).items():
                session.add(Outcome(job_id=job.id, attempt_id=last, split="eval", epoch=epoch,
                                    data=encode_outcomes(arrays)))  # fmt: skip
            session.commit()
            return job.id

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def data(self, sweep: str | None = None) -> Iterator[Data]:
        """The report's frames from a read-only open (outcomes read while it stays open)."""
        with opened(str(self.path), read_only=True) as engine:
            yield load_data(engine, sweep=sweep)
