"""`lora-ga`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lora_ga."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._gradients import check_prepare_params, weight_gradient_sums


@dataclass(frozen=True)
class LoRAGAParams:
    """Paper's settings (line ~1270): 64 gradient estimation steps, gamma = 16."""

    steps: int = 64
    gamma: float = 16.0

    def __post_init__(self) -> None:
        check_prepare_params(self.steps, self.gamma)


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # The prepared factors init_lora_A, init_lora_B (adapter dtype), kept for the PEFT export.
    return Kept(fp32=sum(rank * (s.in_features + s.out_features) for s in sites))


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
    cost=AdapterCost(frozen=_frozen, prepare=weight_gradient_sums, prepare_backward=True),
)
