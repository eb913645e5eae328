"""Watching a sweep: a snapshot of the queue (DB -> dataclasses) and its rich rendering."""

from lorabench.monitor.brackets import BracketProgress, RungCounts
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
    "BracketProgress",
    "DEAD_HEARTBEAT_SECONDS",
    "THROUGHPUT_WINDOW_SECONDS",
    "FailedJob",
    "RungCounts",
    "RunningJob",
    "StatusSnapshot",
    "SweepProgress",
    "WorkerStatus",
    "render_snapshot",
    "take_snapshot",
]
