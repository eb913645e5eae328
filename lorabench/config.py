"""Typed, validated job and sweep configs; canonical JSON and the hashes behind idempotent plans."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lorabench.catalog.task import build_task_params, get_task_info, task_names
from lorabench.catalog.tasks.digits import EFFICIENTNET_LITE0
from lorabench.catalog.tasks.noop import NOOP_MODEL
from lorabench.catalog.variant import build_params, variant_names
from lorabench.errors import ConfigError
from lorabench.search import GRID, SearchSpec
from lorabench.suggest import unknown_name
from lorabench.tracking import parse_backends

# Every integer of a config (counts, sizes, priority, and the numbers inside variant_params
# and task_params) lies in PostgreSQL's INTEGER range, the narrower of the two backends'
# integer columns, unless its field sets its own bounds (seed).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# torch.manual_seed takes up to 2**64 - 1, but the trainer seeds with `seed * 1_000_003 +
# epoch` (data order), `seed + 1` and `seed * 2 + 1` (noop's data): any seed below 2**32
# keeps all of them in range, and it is the range numpy's seeding accepts too.
SEED_MAX = 2**32 - 1
# `plan` refuses a sweep whose cross product is larger (`plan --max-jobs-per-plan` raises
# it): counted from the axis lengths before a single job is built.
MAX_JOBS_PER_PLAN = 100_000


def _number_problem(value: Any, where: str = "") -> str | None:
    """What is wrong with the first unusable number in `value` (nested dicts and lists too)."""
    kind = type(value)
    if kind is int:
        if INT_MIN <= value <= INT_MAX:
            return None
        bound = f"at most {INT_MAX}" if value > INT_MAX else f"at least {INT_MIN}"
        return f"{where!r} must be {bound}" if where else f"must be {bound}"
    if kind is float:
        if math.isfinite(value):
            return None
        return f"{where!r} must be a finite number" if where else "must be a finite number"
    if kind is dict:
        for key, item in value.items():
            if problem := _number_problem(item, f"{where}.{key}" if where else str(key)):
                return problem
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            if problem := _number_problem(item, f"{where}[{index}]"):
                return problem
    return None  # str, bool, None ...


class _Numbers(BaseModel):
    """Floats must be finite and integers in the database's range, in every field, generically:
    `allow_inf_nan=False` covers the float fields, the validator the integer fields without
    bounds of their own and the numbers inside dict fields (variant_params, task_params)."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="after")
    def _usable_numbers(self) -> Any:
        for name in _number_fields(type(self)):
            value = getattr(self, name)
            problem = _number_problem(value)
            if problem is not None:
                raise ValueError(f"field {name!r}: {problem} (got {value!r})")
        return self


@functools.cache
def _number_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `cls` that may hold integers or nested numbers and set no upper bound."""
    names = []
    for name, info in cls.model_fields.items():
        if name in _UNCHECKED_FIELDS:
            continue
        if any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in info.metadata):
            continue  # its own bounds say it (seed)
        kinds = {info.annotation, typing.get_origin(info.annotation),
                 *typing.get_args(info.annotation)}  # fmt: skip
        if kinds & {int, dict}:  # dict: task_params and variant_params hold any numbers
            names.append(name)
    return tuple(names)


# SweepSpec.axes: checked job by job when the sweep is expanded.
_UNCHECKED_FIELDS = ("axes",)


class JobConfig(_Numbers):
    """One fully resolved training run. Its canonical JSON identifies the job."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    task: str
    task_params: dict[str, Any] = Field(default_factory=dict)
    model: str
    variant: str
    variant_params: dict[str, Any] = Field(default_factory=dict)
    targets: tuple[str, ...]
    rank: int = Field(8, gt=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    adapter_checkpointing: bool = False  # recompute adapter activations in backward (†)
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["linear", "cosine"] = "linear"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    epochs: int = Field(gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(1, gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    # The dtype the frozen base weights load in; trainable parameters (adapters, heads) and
    # their optimizer state stay fp32 whatever it is. "auto": the checkpoint's own dtype
    # (bf16 for a 16-bit checkpoint). A 16-bit base computes under bf16 autocast.
    base_dtype: Literal["fp32", "bf16", "auto"] = "fp32"
    seed: int = Field(0, ge=0, le=SEED_MAX)
    max_length: int = Field(gt=0)
    train_size: int | None = Field(None, gt=0)
    eval_size: int | None = Field(None, gt=0)
    # Hold a `select` split out of the training data and score it every epoch, to choose
    # epochs and learning rates on; False: the paper's protocol (train on all of it, choose
    # on the reported split), training data exactly as before the split existed.
    select_split: bool = True

    @model_validator(mode="after")
    def _known_names(self) -> JobConfig:
        if self.task not in task_names():
            unknown = unknown_name("task", self.task, task_names(), lister="lorabench tasks")
            raise ValueError(f"field 'task': {unknown}")
        if self.variant not in variant_names():
            lister = "lorabench variants"
            unknown = unknown_name("variant", self.variant, variant_names(), lister=lister)
            raise ValueError(f"field 'variant': {unknown}")
        build_params(self.variant, self.variant_params)
        build_task_params(self.task, self.task_params)
        if not self.targets:
            raise ValueError("field 'targets': at least one module pattern is needed")
        if self.base_dtype == "bf16" and self.precision != "bf16":
            raise ValueError(
                "field 'base_dtype': a bf16 base computes in bf16; set precision = \"bf16\" "
                'too (or base_dtype = "fp32")'
            )
        return self

    def canonical_json(self, *, without: tuple[str, ...] = ()) -> str:
        data = {
            k: v
            for k, v in self.model_dump(mode="json").items()
            if k not in without and not (k in _OMIT_AT_DEFAULT and v == _OMIT_AT_DEFAULT[k])
        }
        return json.dumps(_normalise(data), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        return _sha256(self.canonical_json())

    @property
    def group_hash(self) -> str:
        """Identifies the job's cell: the same config over seeds."""
        return _sha256(self.canonical_json(without=("seed",)))

    @property
    def bracket_hash(self) -> str:
        """Identifies its successive-halving bracket: the same config over learning rates and
        seeds."""
        return _sha256(self.canonical_json(without=("lr", "seed")))

    @property
    def arm(self) -> str:
        """Its arm within the bracket: the learning rate, as canonical JSON text."""
        return json.dumps(_normalise(self.lr))


# Fields added after databases existed, left out of the canonical JSON while at these values
# (their defaults), so jobs planned before keep their hash and are not planned twice.
_OMIT_AT_DEFAULT: dict[str, Any] = {"task_params": {}, "select_split": True, "base_dtype": "fp32"}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _normalise(value: Any) -> Any:
    """Floats that print differently but are equal (-0.0, 1e-4 vs 0.0001) hash the same."""
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


JOB_FIELDS: tuple[str, ...] = tuple(JobConfig.model_fields)
SWEEP_META_FIELDS = ("name", "description", "max_attempts", "priority", "pack", "log", "search")
# Fields whose single value is itself a list or table: a list of those is a sweep axis.
_COMPOUND_FIELDS: dict[str, tuple[type, ...]] = {
    "targets": (list, tuple),
    "variant_params": (dict,),
    "task_params": (dict,),
}


class SweepSpec(_Numbers):
    """A matrix of jobs: each axis lists values, the plan is their cross product."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    max_attempts: int = Field(3, gt=0)
    priority: int = 0
    # Jobs of this sweep a worker trains together when they differ only in learning rate
    # (`work --pack` overrides it); how to run, so not part of any job's config or hash.
    pack: int = Field(1, gt=0)
    # Experiment trackers its jobs log to (`work --log` overrides): how to run, like `pack`.
    log: tuple[str, ...] = ()
    # How its learning rates are searched: "grid" (every job in full) or "halving" (see
    # lorabench.search); how the queue runs the jobs, so not part of any job's config or hash.
    search: SearchSpec = GRID
    axes: dict[str, tuple[Any, ...]]

    @field_validator("log", mode="before")
    @classmethod
    def _tracking_backends(cls, value: Any) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError("expected a tracking backend (tensorboard, wandb, mlflow) or a list")
        return parse_backends(names)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "sweep") -> SweepSpec:
        unknown = sorted(set(data) - set(JOB_FIELDS) - set(SWEEP_META_FIELDS))
        if unknown:
            allowed = (*SWEEP_META_FIELDS, *JOB_FIELDS)
            message = unknown_name("key", unknown[0], allowed, listed_as="allowed keys")
            raise ConfigError(f"{_at(source)}{message}")
        meta = {k: data[k] for k in SWEEP_META_FIELDS if k in data}
        axes = {k: _as_axis(k, data[k], source) for k in JOB_FIELDS if k in data}
        try:
            return cls(**meta, axes=axes)
        except ValidationError as error:
            raise ConfigError(_describe(error, source)) from None

    @property
    def label(self) -> str:
        """The sweep's name where the user gave one (a file stem counts), else "": the implicit
        "default" names nothing the user wrote, so errors do not start with it."""
        return self.name if "name" in self.model_fields_set else ""

    @classmethod
    def from_toml(cls, path: Path) -> SweepSpec:
        if path.exists() and not path.is_file() and not path.is_dir():  # /dev/zero, a FIFO
            raise ConfigError(f"sweep file {str(path)!r} is not a regular file")
        try:
            text = path.read_bytes().decode("utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"sweep file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"sweep file {str(path)!r} is a folder, not a TOML file") from None
        except OSError as error:
            raise ConfigError(f"sweep file {str(path)!r}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"sweep file {str(path)!r} is not UTF-8 text (byte {error.start}: "
                f"{error.object[error.start : error.start + 1]!r}); TOML files are UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        except ValueError as error:  # a number tomllib cannot convert (over 4300 digits)
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        data.setdefault("name", path.stem)
        return cls.from_mapping(data, source=str(path))

    def override(self, values: Mapping[str, Any], *, source: str = "command line") -> SweepSpec:
        """CLI flags replace the file's axis (or meta field) of the same name."""
        merged: dict[str, Any] = {
            **({"name": self.name} if self.label else {}),  # an implicit name stays implicit
            "description": self.description,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "pack": self.pack,
            "log": list(self.log),
            "search": self.search.model_dump(exclude_unset=True),
            **{k: list(v) for k, v in self.axes.items()},
        }
        values = dict(values)
        flags = values.get("search")
        # Flags refine the file's halving search; `--search grid` replaces it whole.
        if isinstance(flags, Mapping) and flags.get("method") != "grid":
            values["search"] = {**self.search.model_dump(exclude_unset=True), **flags}
        merged.update(values)
        return SweepSpec.from_mapping(merged, source=source)

    @property
    def size(self) -> int:
        """Jobs in the matrix (the product of the axis lengths), counted without building one;
        an upper bound on the planned jobs, as equal configs are planned once."""
        return math.prod(len(values) for values in self.axes.values())

    def describe_size(self) -> str:
        """ "1,000,000 jobs (lr 1000 x seed 1000)": the axes with more than one value."""
        axes = " x ".join(f"{k} {len(v)}" for k, v in self.axes.items() if len(v) > 1)
        return f"{self.size:,} jobs" + (f" ({axes})" if axes else "")

    def expand(self, max_jobs: int | None = MAX_JOBS_PER_PLAN) -> list[JobConfig]:
        """Every job of the matrix, validated; the first invalid one raises ConfigError, and so
        does a matrix of more than `max_jobs` (None: no limit), before any job is built."""
        check_plan_size([self], max_jobs, name=self.label)
        names = list(self.axes)
        jobs: dict[str, JobConfig] = {}
        model_checks: dict[tuple[str, str], str | None] = {}
        for combo in itertools.product(*(self.axes[n] for n in names)):
            values = dict(zip(names, combo, strict=True))
            job = resolve_job(values, source=self.label, model_checks=model_checks)
            jobs.setdefault(job.config_hash, job)
        if self.search.halving:
            for job in jobs.values():
                halving_problem(self.search, job, source=self.label)
        return list(jobs.values())


def halving_problem(search: SearchSpec, job: JobConfig, *, source: str) -> None:
    """Refuse a job successive halving cannot search fairly or usefully."""
    if not job.select_split:
        raise ConfigError(
            f"{_at(source)}search 'halving' promotes learning rates by their select-split "
            "score, never the reported split: it needs select_split = true"
        )
    if search.unit == "epochs" and job.max_steps is None and search.min_budget >= job.epochs:
        raise ConfigError(
            f"{_at(source)}search 'halving': min_budget {search.min_budget} epoch(s) is the "
            f"whole job (epochs {job.epochs}), so every learning rate would train in full; "
            'lower min_budget, or count it in steps (unit = "steps")'
        )
    if search.unit == "steps" and job.max_steps is not None and search.min_budget >= job.max_steps:
        raise ConfigError(
            f"{_at(source)}search 'halving': min_budget {search.min_budget} step(s) is the "
            f"whole job (max_steps {job.max_steps}); lower min_budget"
        )


def check_plan_size(specs: list[SweepSpec], max_jobs: int | None, *, name: str) -> None:
    """Refuse a plan whose matrices (summed) have more than `max_jobs` jobs, by counting."""
    total = sum(spec.size for spec in specs)
    if max_jobs is None or total <= max_jobs:
        return
    sizes = (
        specs[0].describe_size()
        if len(specs) == 1
        else f"{total:,} jobs (" + " + ".join(f"{spec.size:,}" for spec in specs) + ")"
    )
    where = f"sweep {name!r}: " if name else ""
    raise ConfigError(
        f"{where}{sizes}, more than the limit of {max_jobs:,} jobs per plan; split "
        "the sweep, or raise the limit with --max-jobs-per-plan"
    )


def _as_axis(field: str, value: Any, source: str) -> tuple[Any, ...]:
    compound = _COMPOUND_FIELDS.get(field)
    if compound is not None:
        if (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, compound) for v in value)
        ):
            return tuple(value)
        if isinstance(value, compound):
            return (value,)
        kind = "table" if dict in compound else "list of module patterns"
        raise ConfigError(f"{_at(source)}field {field!r}: expected a {kind} or a list of them")
    values = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not values:
        raise ConfigError(f"{_at(source)}field {field!r}: empty list, nothing to plan")
    return values


def resolve_job(
    values: Mapping[str, Any],
    *,
    source: str = "config",
    model_checks: dict[tuple[str, str], str | None] | None = None,
) -> JobConfig:
    """Fill what the sweep leaves open from the task's defaults, then validate (the model as
    far as `model_problem` can tell; `model_checks` remembers its answers over one plan)."""
    task = values.get("task")
    if task is None:
        known = ", ".join(task_names())
        raise ConfigError(f"{_at(source)}field 'task' is required; known: {known}")
    try:
        defaults = get_task_info(str(task)).defaults
    except ValueError as error:
        raise ConfigError(f"{_at(source)}field 'task': {error}") from None
    resolved = {
        "model": defaults.model,
        "targets": defaults.targets,
        "max_length": defaults.max_length,
        "batch_size": defaults.batch_size,
        "epochs": defaults.epochs,
        "schedule": defaults.schedule,
        "train_size": defaults.train_size,
        "eval_size": defaults.eval_size,
        "weight_decay": defaults.weight_decay,
        **values,
    }
    try:
        job = JobConfig(**resolved)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
    except ValueError as error:  # raised by the variant's or task's parameter validation
        raise ConfigError(f"{_at(source)}{error}") from None
    checks = {} if model_checks is None else model_checks
    key = (job.task, job.model)
    if key not in checks:
        checks[key] = model_problem(job.task, job.model)
    problem = checks[key]
    if problem is not None:
        raise ConfigError(f"{_at(source)}field 'model': {problem}")
    return job


# What `plan` checks about a model without loading weights or reaching a hub (a worker
# resolves the name with tasks.models.resolve_model):
# - tasks that build their own network take exactly their built-in name (digits: or the path
#   of a state dict file), and no other task takes those names;
# - the other tasks load a transformers model: an existing folder must hold config.json, a
#   name written as a path (/..., ./..., ../..., ~/...) must exist, and anything else must
#   be shaped like a hub name (`name` or `org/name`). Whether a hub name exists, or its
#   architecture suits the task, only a worker can tell.
_BUILT_IN_MODELS = {"noop": NOOP_MODEL, "digits": EFFICIENTNET_LITE0}
_STATE_DICT_TASKS = ("digits",)
_HUB_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)?$")
_PATH_PREFIXES = ("/", "~", "./", "../", ".\\", "..\\")


def model_problem(task: str, model: str) -> str | None:
    """Why `task` cannot use `model`, as far as the name and the local disk tell; else None."""
    path = Path(model).expanduser()
    built_in = _BUILT_IN_MODELS.get(task)
    if built_in is not None:
        if model == built_in or (task in _STATE_DICT_TASKS and path.is_file()):
            return None
        if task in _STATE_DICT_TASKS:
            return (
                f"task {task} takes {built_in!r} or the path of a state dict file; "
                f"{model!r} is {'a folder' if path.is_dir() else 'neither'}"
            )
        return f"task {task} builds its own network; model must be {built_in!r}, got {model!r}"
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"folder {model!r} holds no config.json, so it is not a Hugging Face model"
        return None
    owner = next((t for t, name in _BUILT_IN_MODELS.items() if name == model), None)
    if owner is not None:
        return (
            f"{model!r} is task {owner}'s built-in network; task {task} loads a Hugging Face "
            "model (a hub name, or a local folder with config.json)"
        )
    if path.exists():
        return f"{model!r} is a file; task {task} loads a model folder (with config.json)"
    if model.startswith(_PATH_PREFIXES) or model in (".", ".."):
        return f"no such model folder {model!r}"
    if not _HUB_NAME.match(model) or ".." in model:
        return (
            f"{model!r} is neither a local model folder nor a Hugging Face hub name "
            "(name or org/name)"
        )
    return None


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{_at(source)}{unknown_name('key', field, JOB_FIELDS, listed_as='allowed keys')}"
    where = f"field {field!r}: " if field else ""
    got = f" (got {first['input']!r})" if field and "input" in first else ""
    return f"{_at(source)}{where}{message}{got}"


def _at(source: str) -> str:
    """The prefix naming where a mistake is ("sweeps/lr.toml: "), or none for an unnamed sweep."""
    return f"{source}: " if source else ""
