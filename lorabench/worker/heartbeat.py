"""Lease renewal from a thread, so a long step or evaluation never lets the lease lapse."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from lorabench.store import ClaimedJob, LeaseLost, heartbeat

log = logging.getLogger(__name__)


class Heartbeater(threading.Thread):
    """Renews the lease every `interval` seconds and publishes the latest progress.

    Sets `lost` when another worker owns the job, `cancel` when a user cancelled it.
    """

    def __init__(
        self,
        engine: Engine,
        claimed: ClaimedJob,
        *,
        worker_id: int,
        lease_seconds: float,
        interval: float,
    ) -> None:
        super().__init__(name=f"heartbeat-job-{claimed.job_id}", daemon=True)
        self.engine, self.claimed, self.worker_id = engine, claimed, worker_id
        self.lease_seconds, self.interval = lease_seconds, interval
        self.progress: dict[str, Any] | None = None
        self.lost, self.cancel = threading.Event(), threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                beat = heartbeat(
                    self.engine,
                    self.claimed.job_id,
                    self.claimed.lease_token,
                    worker_id=self.worker_id,
                    lease_seconds=self.lease_seconds,
                    progress=self.progress,
                )
            except LeaseLost:
                self.lost.set()
                return
            except SQLAlchemyError as error:  # the next beat may succeed; the lease has slack
                log.warning("heartbeat for job %s failed: %s", self.claimed.job_id, error)
                continue
            if beat.cancel_requested:
                self.cancel.set()

    def halt(self) -> None:
        self._halt.set()
        self.join()
