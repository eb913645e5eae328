"""`lora-ga`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lora_ga."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._gradients import check_prepare_params


@dataclass(frozen=True)
class LoRAGAParams:
    """Paper's settings (line ~1270): 64 gradient estimation steps, gamma = 16."""

    steps: int = 64
    gamma: float = 16.0

    def __post_init__(self) -> None:
        check_prepare_params(self.steps, self.gamma)


VARIANT = VariantInfo(
    name="lora-ga",
    params_cls=LoRAGAParams,
    family="initialization",
    equations="Eq. (99)-(103)",
    merges=True,
    summary=(
        "rsLoRA initialised from the gradient's SVD (A: top-r, B: r+1..2r singular vectors), "
        "offset subtracted from W so the start is unchanged."
    ),
    peft=True,
    implementation="lorabench.variants.lora_ga",
)
