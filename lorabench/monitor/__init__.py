"""Watching a sweep: a snapshot of the queue (DB -> dataclasses) and its rich rendering."""

from lorabench.monitor.snapshot import (
    DEAD_HEARTBEAT_SECONDS,
    THROUGHPUT_WINDOW_SECONDS,
    FailedJob,
    RunningJob,
    StatusSnapshot,
    SweepProgress,
    WorkerStatus,
    take_snapshot,
)
from lorabench.monitor.view import render_snapshot

__all__ = [
    "DEAD_HEARTBEAT_SECONDS",
    "THROUGHPUT_WINDOW_SECONDS",
    "FailedJob",
    "RunningJob",
    "StatusSnapshot",
    "SweepProgress",
    "WorkerStatus",
    "render_snapshot",
    "take_snapshot",
]
