"""`lora-plus`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lora_plus."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoRAPlusParams:
    """`lr_ratio`: eta_B / eta_A; the paper's setting is 16 (= 2^4, §II-C1 and its
    "Variant-specific hyperparameters")."""

    lr_ratio: float = 16.0

    def __post_init__(self) -> None:
        if not self.lr_ratio > 0:
            raise ValueError(f"lr_ratio must be positive, got {self.lr_ratio!r}")


VARIANT = VariantInfo(
    name="lora-plus",
    params_cls=LoRAPlusParams,
    family="optimization",
    equations="Eq. (1), (62)-(64)",
    merges=True,
    summary="LoRA with the learning rate of B set to 16x that of A.",
    peft=True,
    implementation="lorabench.variants.lora_plus",
)
