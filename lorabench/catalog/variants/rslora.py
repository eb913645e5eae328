"""`rslora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.rslora."""

from __future__ import annotations

from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants.lora import LoRAParams

VARIANT = VariantInfo(
    name="rslora",
    params_cls=LoRAParams,
    family="optimization",
    equations="Eq. (61)",
    merges=True,
    summary="LoRA with scaling alpha/sqrt(r) for rank-stable learning.",
    peft=True,
    implementation="lorabench.variants.rslora",
)
