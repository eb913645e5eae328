"""Benchmarks as `Task`s; importing this package registers every task."""

from lorabench.tasks import embedded  # noqa: F401  (registers its tasks)
from lorabench.tasks.base import (
    InvalidTaskParams,
    Task,
    TaskDefaults,
    TaskInfo,
    TaskParams,
    TaskSettings,
    UnknownTaskError,
    build_task,
    build_task_params,
    get_task_info,
    task_names,
)

__all__ = [
    "InvalidTaskParams",
    "Task",
    "TaskDefaults",
    "TaskInfo",
    "TaskParams",
    "TaskSettings",
    "UnknownTaskError",
    "build_task",
    "build_task_params",
    "get_task_info",
    "task_names",
]
