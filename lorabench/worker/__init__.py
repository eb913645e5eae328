"""`lorabench work`: a supervisor that claims jobs and trains each in a child process."""

from lorabench.worker.device import pick_device
from lorabench.worker.supervisor import Worker, WorkerSettings
from lorabench.worker.view import WorkerView

__all__ = ["Worker", "WorkerSettings", "WorkerView", "pick_device"]
