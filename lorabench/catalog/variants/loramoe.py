"""`loramoe`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.loramoe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._layout import routed, split_ranks


@dataclass(frozen=True)
class LoRAMoEParams:
    # Paper, variant-specific hyperparameters: 8 experts of rank 1 (total rank 8), 2 activated.
    experts: int = 8
    top_k: int = 2  # 0 or >= experts: LoRAMoE's original dense softmax over all experts
    # LoRAMoE paper's LBC settings: delta (type margin) 0.1 and beta (loss weight) 0.1.
    lbc_delta: float = 0.1
    lbc_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ValueError(f"experts must be >= 1, got {self.experts}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = all experts), got {self.top_k}")
        if not 0.0 <= self.lbc_delta < 1.0:
            raise ValueError(f"lbc_delta must be in [0, 1), got {self.lbc_delta}")
        if self.lbc_weight < 0:
            raise ValueError(f"lbc_weight must be >= 0, got {self.lbc_weight}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # Experts splitting the rank (packed A, B) and the router (experts, in).
    experts = len(split_ranks(rank, (params or LoRAMoEParams()).experts))
    return rank * (in_features + out_features) + experts * in_features


def _kept(call: Call) -> Kept:
    return routed(call, call.rank, len(split_ranks(call.rank, call.params.experts)))


VARIANT = VariantInfo(
    name="loramoe",
    params_cls=LoRAMoEParams,
    family="moe",
    equations="Eq. (124), (125), (128), (129)",
    merges=False,
    summary="Routed rank-split LoRA experts with LoRAMoE's localized balancing constraint.",
    implementation="lorabench.variants.loramoe",
    cost=AdapterCost(params=_params, activations=_kept),
)
