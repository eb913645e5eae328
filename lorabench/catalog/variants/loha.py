"""`loha`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.loha."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoHAParams:
    """The paper lists no LoHA hyperparameters beyond rank, alpha and dropout."""


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return 2 * rank * (in_features + out_features)  # two rank-r pairs


def _factored(in_features: int, out_features: int, rank: int) -> bool:
    """The rank-r^2 Khatri-Rao factors are smaller than the dense update (the layer's rule)."""
    return rank * rank * (in_features + out_features) < in_features * out_features


def _kept(call: Call) -> Kept:
    r2 = call.rank * call.rank
    if _factored(call.i, call.o, call.rank):
        # The (out, r^2) and (r^2, in) Khatri-Rao factors per call, the r^2 hidden per token.
        return Kept(compute=call.tokens * r2 + r2 * (call.i + call.o))
    # One matmul with W + dW: that weight per call, and both fp32 Hadamard factors.
    return Kept(compute=call.o * call.i, fp32=2 * call.o * call.i)


VARIANT = VariantInfo(
    name="loha",
    params_cls=LoHAParams,
    family="rank",
    equations="Eq. (16)",
    merges=True,
    summary="Hadamard product of two rank-r updates: rank up to r^2 for 2x LoRA's params.",
    peft=True,
    implementation="lorabench.variants.loha",
    cost=AdapterCost(params=_params, activations=_kept),
)
