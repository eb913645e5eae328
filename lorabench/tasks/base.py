"""The Task protocol: what the trainer needs from a benchmark, and the registry of task
implementations.

What a task declares (TaskInfo, params, defaults, metrics) lives in the torch-free catalog
(`lorabench.catalog.task`) and is re-exported here; a module that implements tasks registers a
factory for each of its catalog infos, and `build_task` imports it on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from lorabench.catalog.task import (
    METRIC_SPECS,
    SPLITS,
    MetricSpec,
    TaskDefaults,
    TaskInfo,
    TaskParams,
    build_task_params,
    get_task_info,
    split_name,
    task_names,
)
from lorabench.errors import InvalidTaskParams, UnknownTaskError

__all__ = [
    "METRIC_SPECS",
    "SPLITS",
    "Batch",
    "Evaluation",
    "InvalidTaskParams",
    "MetricSpec",
    "Task",
    "TaskDefaults",
    "TaskFactory",
    "TaskInfo",
    "TaskParams",
    "TaskSettings",
    "UnknownTaskError",
    "build_task",
    "build_task_params",
    "get_task_info",
    "register_task",
    "split_name",
    "task_names",
]

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation measured.

    `outcomes`: per-example results in the order of the evaluated examples, either
    ``{"correct": [bool]}`` (right or wrong by the primary metric) or ``{"prediction": [...],
    "target": [...]}`` (what metrics such as MCC or Pearson are recomputed from); None where the
    split has no per-example reading (a held-out loss).
    """

    scores: dict[str, float]
    outcomes: dict[str, list] | None = None


class Task(Protocol):
    """One benchmark bound to one model: data, batching, loss and evaluation.

    Built per job by its `TaskInfo` factory, so tokenizer and label maps live on the
    instance and nothing is shared between jobs.
    """

    info: TaskInfo
    head_modules: tuple[str, ...]  # modules trained in full beside the adapters (a new head)
    eval_batch_size: int | None  # None: the job's batch_size (generation may want another)

    def load_model(self) -> nn.Module: ...

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        """The examples of one of SPLITS ("validation" is an alias of "test"); "select" is
        empty when the job's `select_split` is off."""
        ...

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        """One entry per example. The trainer batches its steps with the task's
        `collate_train(examples)` instead where the task has one (optional; causal LMs pack
        examples without padding there): `collate` stays one entry per example for what reads
        examples one by one (data-driven inits)."""
        ...

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        """Batches for `evaluate`: the training batch for classifiers, prompts for generation
        (and training batches for a select split scored by its loss)."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor: ...

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        """Scores (and outcomes) of `model` on batches of `split`'s examples: "test" gives the
        task's metrics; "select" the same names, or `info.select_metric` where it differs."""
        ...


@dataclass(frozen=True)
class TaskSettings:
    """The part of a job's config a task needs to build itself."""

    model: str
    max_length: int
    seed: int
    train_size: int | None
    eval_size: int | None  # examples scored per evaluated split (test, and select)
    params: TaskParams = TaskParams()
    # Carve a `select` split out of the training data (off: train is what it was before).
    select_split: bool = True
    # JobConfig.base_dtype: the dtype `load_model` loads the frozen base weights in.
    base_dtype: str = "fp32"


TaskFactory = Callable[[TaskSettings], Task]


# Filled at import by the implementation modules: each task's catalog info and its factory.
_REGISTRY: dict[str, tuple[TaskInfo, TaskFactory]] = {}


def register_task(info: TaskInfo, factory: TaskFactory) -> None:
    if info.name in _REGISTRY:
        raise ValueError(f"task {info.name!r} is already registered")
    if get_task_info(info.name) is not info:  # UnknownTaskError for an undeclared name
        raise ValueError(
            f"task {info.name!r}: its info is not the catalog's TaskInfo (lorabench.catalog.tasks)"
        )
    _REGISTRY[info.name] = (info, factory)


def build_task(name: str, settings: TaskSettings) -> Task:
    """The task `name` for one job: its implementation module is imported on first use."""
    info = get_task_info(name)
    importlib.import_module(info.implementation)
    if name not in _REGISTRY:
        raise ValueError(f"{info.implementation} does not register task {name!r}")
    return _REGISTRY[name][1](settings)
