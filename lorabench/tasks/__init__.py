"""Benchmarks as `Task`s; importing this package registers every task."""

from lorabench.tasks import embedded  # noqa: F401  (registers its tasks)
from lorabench.tasks.base import (
    Task,
    TaskDefaults,
    TaskInfo,
    TaskSettings,
    UnknownTaskError,
    build_task,
    get_task_info,
    task_names,
)

__all__ = [
    "Task",
    "TaskDefaults",
    "TaskInfo",
    "TaskSettings",
    "UnknownTaskError",
    "build_task",
    "get_task_info",
    "task_names",
]
