"""Typed, validated job and sweep configs; canonical JSON and the hashes behind idempotent plans."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lorabench.tasks import build_task_params, get_task_info, task_names
from lorabench.variants import build_params, variant_names


class ConfigError(ValueError):
    """A user mistake in a sweep or job config; the message names the field."""


class JobConfig(BaseModel):
    """One fully resolved training run. Its canonical JSON identifies the job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    seed: int = Field(0, ge=0)
    max_length: int = Field(gt=0)
    train_size: int | None = Field(None, gt=0)
    eval_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _known_names(self) -> JobConfig:
        if self.task not in task_names():
            raise ValueError(
                f"field 'task': unknown task {self.task!r}; known: {', '.join(task_names())}"
            )
        if self.variant not in variant_names():
            raise ValueError(
                f"field 'variant': unknown variant {self.variant!r}; "
                f"known: {', '.join(variant_names())}"
            )
        build_params(self.variant, self.variant_params)
        build_task_params(self.task, self.task_params)
        if not math.isfinite(self.lr):
            raise ValueError("field 'lr': must be a finite number")
        if not self.targets:
            raise ValueError("field 'targets': at least one module pattern is needed")
        return self

    def canonical_json(self, *, without: tuple[str, ...] = ()) -> str:
        data = {
            k: v
            for k, v in self.model_dump(mode="json").items()
            if k not in without and not (k in _OMIT_WHEN_EMPTY and not v)
        }
        return json.dumps(_normalise(data), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        return _sha256(self.canonical_json())

    @property
    def group_hash(self) -> str:
        """Identifies the job's cell: the same config over seeds."""
        return _sha256(self.canonical_json(without=("seed",)))


# Fields added after databases existed: left out while empty, so older jobs keep their hash.
_OMIT_WHEN_EMPTY = ("task_params",)


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
SWEEP_META_FIELDS = ("name", "description", "max_attempts", "priority", "pack")
# Fields whose single value is itself a list or table: a list of those is a sweep axis.
_COMPOUND_FIELDS: dict[str, tuple[type, ...]] = {
    "targets": (list, tuple),
    "variant_params": (dict,),
    "task_params": (dict,),
}


class SweepSpec(BaseModel):
    """A matrix of jobs: each axis lists values, the plan is their cross product."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    max_attempts: int = Field(3, gt=0)
    priority: int = 0
    # Jobs of this sweep a worker trains together when they differ only in learning rate
    # (`work --pack` overrides it); how to run, so not part of any job's config or hash.
    pack: int = Field(1, gt=0)
    axes: dict[str, tuple[Any, ...]]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "sweep") -> SweepSpec:
        unknown = sorted(set(data) - set(JOB_FIELDS) - set(SWEEP_META_FIELDS))
        if unknown:
            allowed = ", ".join((*SWEEP_META_FIELDS, *JOB_FIELDS))
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {allowed}")
        meta = {k: data[k] for k in SWEEP_META_FIELDS if k in data}
        axes = {k: _as_axis(k, data[k], source) for k in JOB_FIELDS if k in data}
        try:
            return cls(**meta, axes=axes)
        except ValidationError as error:
            raise ConfigError(_describe(error, source)) from None

    @classmethod
    def from_toml(cls, path: Path) -> SweepSpec:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"sweep file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        data.setdefault("name", path.stem)
        return cls.from_mapping(data, source=str(path))

    def override(self, values: Mapping[str, Any], *, source: str = "command line") -> SweepSpec:
        """CLI flags replace the file's axis (or meta field) of the same name."""
        merged: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "pack": self.pack,
            **{k: list(v) for k, v in self.axes.items()},
        }
        merged.update(values)
        return SweepSpec.from_mapping(merged, source=source)

    def expand(self) -> list[JobConfig]:
        """Every job of the matrix, validated; the first invalid one raises ConfigError."""
        names = list(self.axes)
        jobs: dict[str, JobConfig] = {}
        for combo in itertools.product(*(self.axes[n] for n in names)):
            job = resolve_job(dict(zip(names, combo, strict=True)), source=self.name)
            jobs.setdefault(job.config_hash, job)
        return list(jobs.values())


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
        raise ConfigError(f"{source}: field {field!r}: expected a {kind} or a list of them")
    values = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not values:
        raise ConfigError(f"{source}: field {field!r}: empty list, nothing to plan")
    return values


def resolve_job(values: Mapping[str, Any], *, source: str = "config") -> JobConfig:
    """Fill what the sweep leaves open from the task's defaults, then validate."""
    task = values.get("task")
    if task is None:
        raise ConfigError(f"{source}: field 'task' is required; known: {', '.join(task_names())}")
    try:
        defaults = get_task_info(str(task)).defaults
    except ValueError as error:
        raise ConfigError(f"{source}: field 'task': {error}") from None
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
        return JobConfig(**resolved)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
    except ValueError as error:  # raised by the variant's or task's parameter validation
        raise ConfigError(f"{source}: {error}") from None


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {field!r}"
    where = f"field {field!r}: " if field else ""
    got = f" (got {first['input']!r})" if field and "input" in first else ""
    return f"{source}: {where}{message}{got}"
