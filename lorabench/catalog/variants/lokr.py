"""`lokr`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lokr."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoKrParams:
    """k: cap on the small Kronecker factor's side in Eqs. (18)-(19) (PEFT's decompose_factor).

    The paper leaves k open; -1 (no cap, so the largest divisor <= sqrt(dim)) is the default of
    LyCORIS and PEFT. The paper's own codebase defaults to k = 32, which differs only for
    dimensions with a divisor in (32, sqrt(dim)], e.g. 4096 (32 x 128 instead of 64 x 64).
    """

    k: int = -1

    def __post_init__(self) -> None:
        if self.k != -1 and self.k < 1:
            raise ValueError(f"k must be a positive int or -1 (no cap), got {self.k}")


def small_factor(dim: int, k: int = -1) -> int:
    """Eqs. (18)-(19): the largest u <= min(k, sqrt(dim)) that divides dim (k = -1: no cap)."""
    cap = math.isqrt(dim) if k == -1 else min(k, math.isqrt(dim))
    return max(u for u in range(1, cap + 1) if dim % u == 0)


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    k = (params or LoKrParams()).k
    in_d, out_d = small_factor(in_features, k), small_factor(out_features, k)
    return rank * (in_d + out_d) + (in_features // in_d) * (out_features // out_d)


def _kept(call: Call) -> Kept:
    # The input viewed as (in_d, in / in_d) times the small (out_d, in_d) factor: that
    # (out_d, in / in_d) product per token is what C's gradient reads.
    k = call.params.k
    in_d, out_d = small_factor(call.i, k), small_factor(call.o, k)
    return Kept(compute=call.tokens * out_d * (call.i // in_d))


VARIANT = VariantInfo(
    name="lokr",
    params_cls=LoKrParams,
    family="rank",
    equations="Eqs. (18)-(21)",
    merges=True,
    summary="Kronecker product of a small rank-r factor B A and a full factor C.",
    peft=True,
    implementation="lorabench.variants.lokr",
    cost=AdapterCost(params=_params, activations=_kept),
)
