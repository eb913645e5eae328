"""Paper presets (lorabench/presets/*.toml) and the dry-run GPU-hours estimate.

A preset file is a sweep file whose top-level keys are shared by one or more `[[sweep]]` tables;
each table adds or replaces keys, and is expanded as its own cross product. One TOML table is
one cross product, and some experiments are not (DenseLoRA's larger rank, the sensitivity
study's one-axis-at-a-time ablations). All sub-sweeps are planned into one named sweep (the
preset's name), so `report --sweep paper-glue` sees the whole experiment.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from lorabench.catalog.task import get_task_info
from lorabench.config import ConfigError, JobConfig, SweepSpec
from lorabench.suggest import unknown_name

SUB_SWEEP_KEY = "sweep"
LABEL_KEY = "label"  # names a [[sweep]] table in the dry-run output; not a job field


@dataclass(frozen=True)
class Preset:
    name: str
    shared: dict[str, Any]
    sweeps: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PlannedPreset:
    name: str
    parts: tuple[tuple[str, SweepSpec], ...]  # (label, spec) per [[sweep]] table

    def spec_json(self) -> str:
        # `pack` and `log` on top, as in a sweep file's spec (flags give every part the same).
        data = {"preset": self.name, "pack": self.parts[0][1].pack,
                "log": list(self.parts[0][1].log),
                "sweeps": [s.model_dump(mode="json") for _, s in self.parts]}  # fmt: skip
        return json.dumps(data, sort_keys=True)


def _preset_dir() -> Any:
    return files("lorabench").joinpath("presets")


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in _preset_dir().iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> Preset:
    path = _preset_dir().joinpath(f"{name}.toml")
    if not path.is_file():
        raise ConfigError(unknown_name("preset", name, preset_names()))
    data = tomllib.loads(path.read_text())
    sweeps = data.pop(SUB_SWEEP_KEY, None) or [{}]
    data.setdefault("name", name)
    return Preset(name=name, shared=data, sweeps=tuple(sweeps))


def plan_preset(preset: Preset, overrides: Mapping[str, Any]) -> PlannedPreset:
    """Command-line flags replace the axis of the same name in every part, except `variant`,
    which picks: each chosen variant keeps the settings of the parts that list it (DenseLoRA its
    rank 192); one no part lists joins the parts that take their variants from the shared keys
    (every sensitivity axis), or else the first part (the paper's default configuration)."""
    rest = {k: v for k, v in overrides.items() if k != "variant"}
    parts: list[tuple[str, SweepSpec]] = []
    own_variants: list[bool] = []
    for index, table in enumerate(preset.sweeps, 1):
        table = dict(table)
        own_variants.append("variant" in table)
        label = str(table.pop(LABEL_KEY, f"sweep-{index}"))
        source = f"preset {preset.name} [[sweep]] {label}"
        spec = SweepSpec.from_mapping({**preset.shared, **table}, source=source)
        parts.append((label, spec.override(rest, source=source)))
    if "variant" in overrides:
        shared = [not own for own in own_variants]
        takers = shared if any(shared) else [i == 0 for i in range(len(parts))]
        parts = _pick_variants(parts, list(overrides["variant"]), takers)
    return PlannedPreset(name=parts[0][1].name, parts=tuple(parts))


def _pick_variants(
    parts: list[tuple[str, SweepSpec]], wanted: list[Any], takers: list[bool]
) -> list[tuple[str, SweepSpec]]:
    """`takers`: the parts that also plan the variants no part lists."""
    listed = {v for _, spec in parts for v in spec.axes.get("variant", ())}
    unlisted = [v for v in wanted if v not in listed]
    picked: list[tuple[str, SweepSpec]] = []
    for (label, spec), taker in zip(parts, takers, strict=True):
        keep = [v for v in wanted if v in spec.axes.get("variant", ())]
        if taker:
            keep += unlisted
        if keep:
            picked.append((label, spec.override({"variant": keep})))
    if not picked:
        raise ConfigError("--variant: no variant given")
    return picked


# --- The estimate -------------------------------------------------------------------------------
# Paper Table II: one run of LoRA on Llama-3.1-8B-Base, 100k MetaMathQA samples, one H200, bf16,
# sequence length 1024, batch size 1: 4h42min. Other rows, in minutes, give each variant's ratio.
BASE_MINUTES = 282.0
TABLE_II_MINUTES: dict[str, float] = {
    "lora": 282, "dora": 559, "delora": 556, "adalora": 730, "hira": 490, "rasa": 374,
    "denselora": 436, "randlora": 804, "melora": 409, "loramoe": 2191, "moslora": 350,
    "aurora": 752, "loha": 2128, "lokr": 2153, "loran": 388,
}  # fmt: skip
CHECKPOINTED_MINUTES = {"lora": 382.0, "dora": 737.0}  # the † rows
RANDLORA_FULL_RANK_MINUTES = 2371.0  # RandLoRA without the U = 1024 cap
LORAMOE_E6_MINUTES = 1677.0  # LoRAMoE with 6 experts
# Assumption, not a measurement: a RoBERTa-base GLUE run (10 epochs) or a CLIP-ViT-B/16 image
# run costs a small fraction of a Llama-8B NLG run (~60x fewer parameters, shorter inputs, but a
# small model keeps a GPU less busy). Variant ratios from Table II are applied unchanged.
FAMILY_SCALE = {"nlg": 1.0, "nlu": 0.05, "ic": 0.03}
NLG_BASE_SAMPLES = 100_000


def variant_minutes(job: JobConfig) -> float:
    """Table II minutes for the job's variant (LoRA's where Table II has no row)."""
    params = job.variant_params
    if job.variant == "randlora" and params.get("max_basis_dim", 1024) > 1024:
        minutes = RANDLORA_FULL_RANK_MINUTES
    elif job.variant == "loramoe" and params.get("experts", 8) <= 6:
        minutes = LORAMOE_E6_MINUTES
    else:
        minutes = TABLE_II_MINUTES.get(job.variant, BASE_MINUTES)
    if job.adapter_checkpointing:
        if job.variant in CHECKPOINTED_MINUTES:
            return CHECKPOINTED_MINUTES[job.variant]
        minutes *= CHECKPOINTED_MINUTES["lora"] / BASE_MINUTES
    return minutes


def job_gpu_hours(job: JobConfig) -> float:
    family = get_task_info(job.task).family
    hours = variant_minutes(job) / 60 * FAMILY_SCALE.get(family, 1.0)
    if family == "nlg":  # Table II's run is one epoch over 100k samples
        hours *= job.epochs * (job.train_size or NLG_BASE_SAMPLES) / NLG_BASE_SAMPLES
    return hours


def gpu_hours(jobs: Sequence[JobConfig]) -> float:
    return sum(job_gpu_hours(job) for job in jobs)


ESTIMATE_NOTE = (
    "order-of-magnitude guide: H200 GPU-hours from the paper's Table II "
    "(LoRA, Llama-3.1-8B, 100k samples: 4h42min; variant time ratios), "
    "NLU x0.05 and IC x0.03 assumed; generation/evaluation time not included"
)


def format_hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:.3g}"
