"""`goat`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.goat."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._layout import routed, split_ranks


@dataclass(frozen=True)
class GOATParams:
    # Paper, variant-specific hyperparameters: 8 experts of rank 1 (total rank 8), 2 activated.
    experts: int = 8
    top_k: int = 2
    # Official GOAT-PEFT defaults: rho = 10, eta = 1 (ETA), init_cof = 1/experts, aux 1e-3.
    rho: float = 10.0
    eta: float = 1.0
    init_cof: float | None = None
    aux_loss_coeff: float = 1e-3

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ValueError(f"experts must be >= 1, got {self.experts}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not (self.rho > 0 and self.eta > 0):
            raise ValueError(f"rho and eta must be > 0, got {self.rho}, {self.eta}")
        cof = self.init_cof
        if cof is not None and (
            isinstance(cof, bool) or not isinstance(cof, int | float) or not math.isfinite(cof)
        ):
            raise ValueError(f"init_cof must be a finite number or None, got {self.init_cof!r}")
        if self.aux_loss_coeff < 0:
            raise ValueError(f"aux_loss_coeff must be >= 0, got {self.aux_loss_coeff}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # Experts splitting the rank (packed A, B) and the router (experts, in).
    experts = len(split_ranks(rank, (params or GOATParams()).experts))
    return rank * (in_features + out_features) + experts * in_features


def _kept(call: Call) -> Kept:
    return routed(call, call.rank, len(split_ranks(call.rank, call.params.experts)))


VARIANT = VariantInfo(
    name="goat",
    params_cls=GOATParams,
    family="moe",
    equations="Eq. (124), (125), (126), (132)",
    merges=False,
    summary="Top-k LoRA experts initialised from disjoint SVD segments, GOAT scaling.",
    implementation="lorabench.variants.goat",
    cost=AdapterCost(params=_params, activations=_kept),
)
