"""Planned jobs grouped by what their memory depends on, one estimate per group, and which GPUs
it fits."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.task import get_task_info
from lorabench.catalog.tasks.digits import EFFICIENTNET_LITE0
from lorabench.catalog.tasks.noop import NOOP_MODEL
from lorabench.memory.estimate import MemoryEstimate, estimate_peak
from lorabench.memory.shapes import find_shape

# Every job field that changes the estimate; lr, seed, epochs ... do not.
MEMORY_FIELDS = ("task", "model", "variant", "rank", "variant_params", "targets", "batch_size",
                 "max_length", "precision", "base_dtype", "adapter_checkpointing", "dropout",
                 "task_params")  # fmt: skip
UNKNOWN_SHAPE = "unknown model shape; no estimate"
NOT_A_TRANSFORMER = "not a transformer; no estimate"
# Memory as nvidia-smi reports it (MiB) for an H100 80GB HBM3 and an H200 141GB; a job "fits"
# when its estimate leaves 5% for the CUDA context and allocator fragmentation.
GPUS = (("H100", 81_559 * 2**20), ("H200", 143_771 * 2**20))
HEADROOM = 0.95


@dataclass(frozen=True)
class Family:
    """Planned jobs that need the same memory: its label, size, one config, the estimate (or
    why there is none)."""

    label: str
    jobs: int
    config: Mapping[str, Any]
    estimate: MemoryEstimate | None
    problem: str | None = None


def job_estimate(job: Mapping[str, Any]) -> tuple[MemoryEstimate | None, str | None]:
    """(estimate, None), or (None, why there is none) for a job given as a dict."""
    if get_task_info(job["task"]).defaults.model in (NOOP_MODEL, EFFICIENTNET_LITE0):
        return None, NOT_A_TRANSFORMER
    shape = find_shape(job["model"])
    if shape is None:
        return None, UNKNOWN_SHAPE
    return estimate_peak(job, shape), None


def families(jobs: Iterable[Mapping[str, Any]]) -> list[Family]:
    """One `Family` per distinct combination of MEMORY_FIELDS, in order of first appearance."""
    groups: dict[str, tuple[Mapping[str, Any], int]] = {}
    for job in jobs:
        key = _key(job)
        first, count = groups.get(key, (job, 0))
        groups[key] = (first, count + 1)
    labels = _labels([first for first, _ in groups.values()])
    found = []
    for (first, count), label in zip(groups.values(), labels, strict=True):
        estimate, problem = job_estimate(first)
        found.append(Family(label, count, first, estimate, problem))
    return found


def default_jobs(task: str, rank: int = 8) -> list[dict[str, Any]]:
    """LoRA at rank `rank` on the task's defaults (model, targets, batch, length), once in
    fp32 and once with a bf16 base under bf16 autocast: what `tasks NAME` estimates."""
    defaults = get_task_info(task).defaults
    job = {"task": task, "model": defaults.model, "variant": "lora", "rank": rank,
           "variant_params": {}, "targets": list(defaults.targets), "dropout": 0.0,
           "batch_size": defaults.batch_size, "max_length": defaults.max_length,
           "adapter_checkpointing": False, "task_params": {}}  # fmt: skip
    return [{**job, "precision": "fp32", "base_dtype": "fp32"},
            {**job, "precision": "bf16", "base_dtype": "bf16"}]  # fmt: skip


def fitting(peak: int) -> list[str]:
    """The GPUs (GPUS) a job of this peak fits on."""
    return [name for name, total in GPUS if peak <= HEADROOM * total]


def _key(job: Mapping[str, Any]) -> str:
    values = {field: job.get(field) for field in MEMORY_FIELDS}
    values["base_dtype"] = values["base_dtype"] or "fp32"  # before the field existed
    return json.dumps(values, sort_keys=True, default=str)


def _labels(configs: list[Mapping[str, Any]]) -> list[str]:
    """The variant, then every other field that differs between families, written short
    ("lora gsm8k r=8 bf16 max_basis_dim=4096")."""
    varying = [
        f
        for f in MEMORY_FIELDS
        if f != "variant"
        and len({json.dumps(c.get(f), sort_keys=True, default=str) for c in configs}) > 1
    ]
    return [" ".join(part for part in (str(c["variant"]), *(_short(f, c.get(f)) for f in varying))
                     if part)
            for c in configs]  # fmt: skip


# How a label writes a field's value: task and precision plain, a model by its last name.
_PREFIX = {"rank": "r=", "batch_size": "bs=", "max_length": "len=", "base_dtype": "base=",
           "dropout": "dropout=", "targets": "targets="}  # fmt: skip


def _short(field: str, value: Any) -> str:
    if field == "base_dtype":
        value = value or "fp32"  # jobs planned before the field existed
    if field == "model":
        return str(value).rstrip("/").rpartition("/")[2]
    if field == "adapter_checkpointing":
        return "adapter-ckpt" if value else ""
    if isinstance(value, dict):  # variant_params, task_params
        return " ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return f"{_PREFIX.get(field, '')}{value}"
