"""`lora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoRAParams:
    """LoRA has no hyperparameters beyond rank, alpha and dropout."""


VARIANT = VariantInfo(
    name="lora",
    params_cls=LoRAParams,
    family="baseline",
    equations="Eq. (1), (88), (134)",
    merges=True,
    summary="Low-rank update B A scaled by alpha/r; B starts at zero.",
    peft=True,
    implementation="lorabench.variants.lora",
)
