"""What a task declares, importable without torch: splits, defaults, params, metrics, TaskInfo.

Every module of `lorabench.catalog.tasks` whose name does not start with "_" declares its tasks
as `TASKS: tuple[TaskInfo, ...]`; `task_names`, `get_task_info` and `build_task_params` read
them. Nothing here loads a model or data: each TaskInfo names the module that implements it
(`implementation`), which `lorabench.tasks.build_task` imports when a job runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lorabench.catalog._scan import by_name, declared
from lorabench.errors import InvalidTaskParams, UnknownTaskError
from lorabench.suggest import unknown_name

# Every task's splits: `train`; `select`, held out from training and read only to choose epochs
# and learning rates; `test`, the split the task reports (stored as metric split "eval").
SPLITS = ("train", "select", "test")


def split_name(split: str) -> str:
    """`split` as one of SPLITS: "validation", the name before `select` existed, is "test"."""
    name = "test" if split == "validation" else split
    if name not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return name


# How much of a training pool the `select` split holds out (`lorabench.tasks.selection.carve`),
# here without torch so that `plan --dry-run` can count a job's steps per epoch.
SELECT_FRACTION = 0.1
SELECT_CAP = 1000  # classification: one forward pass per example


def select_size(pool: int, *, fraction: float = SELECT_FRACTION, cap: int = SELECT_CAP) -> int:
    """How many of a pool of `pool` examples are held out (none of a pool of one)."""
    if pool < 2:
        return 0
    return min(cap, max(1, round(pool * fraction)), pool - 1)


@dataclass(frozen=True)
class TaskDefaults:
    """Settings a job inherits from its task unless the sweep overrides them."""

    model: str
    targets: tuple[str, ...]
    max_length: int
    batch_size: int
    epochs: int
    schedule: str
    train_size: int | None = None
    eval_size: int | None = None
    weight_decay: float = 0.0


@dataclass(frozen=True)
class HubDataset:
    """A dataset a task reads: `datasets.load_dataset(name, config)` (a hub name, or a local
    path as the user gave it)."""

    name: str
    config: str | None = None


class TaskParams(BaseModel):
    """A task's own settings (data source, generation length ...), given as `task_params`.

    Subclasses list their fields with defaults; unknown keys and wrong types are refused
    when the sweep is planned, not when a worker starts the job.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        """The datasets task `task` reads with these params, which `lorabench fetch` caches
        ahead of time; none by default (embedded data, or data that ships in a package)."""
        return ()


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is ranked and shown: the report reads this instead of guessing."""

    name: str
    higher_is_better: bool = True
    percent: bool = True  # shown x100 (a fraction, or a correlation the paper shows x100)
    paper_name: str | None = None  # its column name in the paper's tables


# Every metric a built-in task reports. MNLI's "accuracy_matched"/"_mismatched" and HumanEval's
# pass@k share the spec of their base name.
METRIC_SPECS = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", paper_name="Acc"),
        MetricSpec("macro_f1", paper_name="Macro-F1"),
        MetricSpec("f1", paper_name="F1"),
        MetricSpec("matthews_correlation", paper_name="MCC"),
        MetricSpec("pearson", paper_name="Pearson"),
        MetricSpec("spearmanr", paper_name="Spearman"),
        MetricSpec("accuracy_strict", paper_name="GSM8K"),
        MetricSpec("accuracy_flexible"),
        MetricSpec("pass@1", paper_name="HumanEval"),
        MetricSpec("score", percent=False),  # noop: minus the mean squared error
        MetricSpec("loss", higher_is_better=False, percent=False),
    )
}


@dataclass(frozen=True)
class TaskInfo:
    """What `lorabench tasks` shows and what `plan` validates against."""

    name: str
    family: str  # "nlu" | "nlg" | "ic"
    primary_metric: str
    metrics: tuple[str, ...]
    defaults: TaskDefaults
    needs_download: bool
    summary: str
    # The module that implements the task (registers its factory), e.g. "lorabench.tasks.glue";
    # imported only to build the task.
    implementation: str
    params_cls: type[TaskParams] = TaskParams
    # The metric read on the `select` split to choose epochs and learning rates; None: the
    # primary metric (a task whose select split cannot be scored that way, e.g. generated code
    # without tests, names another, such as a held-out "loss").
    select_metric: str | None = None
    # Overrides of METRIC_SPECS for this task's metrics (a task with its own metric adds it).
    metric_specs: tuple[MetricSpec, ...] = ()
    # Examples in the training pool before `select` is held out, where the catalog knows the
    # data (None: unknown); `plan --dry-run` counts steps per epoch from it (no train_size).
    train_rows: int | None = None

    def metric_spec(self, metric: str) -> MetricSpec:
        """The declaration of one of this task's metrics; unknown names are an error."""
        own = {spec.name: spec for spec in self.metric_specs}
        if metric in own:
            return own[metric]
        stems = (metric, metric.removesuffix("_matched").removesuffix("_mismatched"),
                 "pass@1" if metric.startswith("pass@") else metric)  # fmt: skip
        base = next((m for m in stems if m in METRIC_SPECS), None)
        if base is None:
            raise ValueError(f"task {self.name!r} declares no metric {metric!r}")
        return dataclasses.replace(METRIC_SPECS[base], name=metric)


DECLARATIONS = "lorabench.catalog.tasks"


@functools.cache
def task_infos() -> Mapping[str, TaskInfo]:
    """Every declared task by name (sorted): the `TASKS` of each declaration module."""
    return by_name(_declared_tasks(), "task")


def _declared_tasks() -> Iterator[tuple[str, TaskInfo]]:
    for module_name, expected, infos in declared(DECLARATIONS, "TASKS", "lorabench.tasks"):
        if not isinstance(infos, tuple) or not all(isinstance(i, TaskInfo) for i in infos):
            raise TypeError(f"{module_name} must define TASKS, a tuple of TaskInfo")
        for info in infos:
            if info.implementation != expected:
                raise ValueError(
                    f"{module_name}: task {info.name!r} has implementation "
                    f"{info.implementation!r}, expected {expected!r}"
                )
            yield module_name, info


def task_names() -> list[str]:
    return list(task_infos())


def get_task_info(name: str) -> TaskInfo:
    try:
        return task_infos()[name]
    except KeyError:
        raise UnknownTaskError(
            unknown_name("task", name, task_names(), lister="lorabench tasks")
        ) from None


def build_task_params(name: str, values: dict[str, Any] | None = None) -> TaskParams:
    """The task's validated params; missing fields take the task's defaults."""
    cls = get_task_info(name).params_cls
    allowed = ", ".join(cls.model_fields) or "(none)"
    try:
        return cls(**(values or {}))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            message = f"unknown parameter {key!r}; allowed: {allowed}"
        else:
            message = f"parameter {key}={first.get('input')!r}: {first['msg']}"
        raise InvalidTaskParams(f"task {name!r}: {message}") from None
