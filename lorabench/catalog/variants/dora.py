"""`dora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.dora."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class DoRAParams:
    """The paper lists no DoRA hyperparameters beyond rank, alpha and dropout."""


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # LoRA's A and B plus the magnitude vector m (one entry per output row).
    return rank * (in_features + out_features) + out_features


def _kept(call: Call) -> Kept:
    # LoRA's hidden plus the fused combine's one (tokens, out) tensor (W x + s B A x); the
    # row norm is computed without a graph and never forms the dense update.
    return Kept(compute=call.tokens * (call.rank + call.o))


VARIANT = VariantInfo(
    name="dora",
    params_cls=DoRAParams,
    family="optimization",
    equations="Eq. (68), (135)",
    merges=True,
    summary="Learned per-row magnitude times the normalised direction W + s B A.",
    peft=True,
    implementation="lorabench.variants.dora",
    cost=AdapterCost(params=_params, activations=_kept),
)
