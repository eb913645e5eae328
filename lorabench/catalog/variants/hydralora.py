"""`hydralora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.hydralora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class HydraLoRAParams:
    heads: int = 4  # number of B matrices (official fine-tuning.sh: lora_b_nums=4)

    def __post_init__(self) -> None:
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, got {self.heads}")


VARIANT = VariantInfo(
    name="hydralora",
    params_cls=HydraLoRAParams,
    family="moe",
    equations="Eq. (133)",
    merges=False,
    summary="Asymmetric LoRA: one shared A, a router mixing several B heads.",
    implementation="lorabench.variants.hydralora",
)
