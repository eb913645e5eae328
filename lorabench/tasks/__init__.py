"""Benchmarks as `Task`s; importing this package registers every task.

Every module here is imported so its `register_task` calls run: task modules keep heavy
imports (datasets, transformers) inside functions, so `lorabench --help` stays fast.
"""

import importlib
import pkgutil

from lorabench.tasks.base import (
    SPLITS,
    Evaluation,
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
    split_name,
    task_names,
)

__all__ = [
    "SPLITS",
    "Evaluation",
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
    "split_name",
    "task_names",
]

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
