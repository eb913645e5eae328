"""`lorabench work`: a supervisor that claims jobs and trains each in a child process.

The names below are imported on first use: the fork server imports `lorabench.worker.lifeline`
first in its preload, and must reach it without importing torch on the way (see lifeline.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorabench.worker.device import pick_device
    from lorabench.worker.supervisor import Worker, WorkerSettings
    from lorabench.worker.view import WorkerView

_HOMES = {
    "Worker": "supervisor",
    "WorkerSettings": "supervisor",
    "WorkerView": "view",
    "pick_device": "device",
}

__all__ = ["Worker", "WorkerSettings", "WorkerView", "pick_device"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"lorabench.worker.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
