"""The Task protocol: what the trainer needs from a benchmark, and the task registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from lorabench.errors import InvalidTaskParams, UnknownTaskError

Batch = dict[str, torch.Tensor]

# Every task's splits: `train`; `select`, held out from training and read only to choose epochs
# and learning rates; `test`, the split the task reports (stored as metric split "eval").
SPLITS = ("train", "select", "test")


def split_name(split: str) -> str:
    """`split` as one of SPLITS: "validation", the name before `select` existed, is "test"."""
    name = "test" if split == "validation" else split
    if name not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return name


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


class TaskParams(BaseModel):
    """A task's own settings (data source, generation length ...), given as `task_params`.

    Subclasses list their fields with defaults; unknown keys and wrong types are refused
    when the sweep is planned, not when a worker starts the job.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


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
    params_cls: type[TaskParams] = TaskParams
    # The metric read on the `select` split to choose epochs and learning rates; None: the
    # primary metric (a task whose select split cannot be scored that way, e.g. generated code
    # without tests, names another, such as a held-out "loss").
    select_metric: str | None = None
    # Overrides of METRIC_SPECS for this task's metrics (a task with its own metric adds it).
    metric_specs: tuple[MetricSpec, ...] = ()

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

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch: ...

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


TaskFactory = Callable[[TaskSettings], Task]


_REGISTRY: dict[str, tuple[TaskInfo, TaskFactory]] = {}


def register_task(info: TaskInfo, factory: TaskFactory) -> None:
    if info.name in _REGISTRY:
        raise ValueError(f"task {info.name!r} is already registered")
    _REGISTRY[info.name] = (info, factory)


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task_info(name: str) -> TaskInfo:
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())}"
        ) from None


def build_task(name: str, settings: TaskSettings) -> Task:
    get_task_info(name)
    return _REGISTRY[name][1](settings)


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
