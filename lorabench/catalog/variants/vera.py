"""`vera`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.vera."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape, never
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class VeRAParams:
    """d_initial: constant initial value of the vector d (PEFT's `d_initial`).
    projection_prng_key: seed of the shared random bases (PEFT's `projection_prng_key`)."""

    d_initial: float = 0.1
    projection_prng_key: int = 0


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return rank + out_features  # the diagonals d (r) and b (out)


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # One pair of random bases for all layers, sized by the largest input and output (adapter
    # dtype, as the implementation makes them).
    max_in = max(s.in_features for s in sites)
    max_out = max(s.out_features for s in sites)
    return Kept(fp32=rank * (max_in + max_out))


def _kept(call: Call) -> Kept:
    # The frozen bases' casts (their matmuls' input gradients read them; the input itself is
    # not kept, as no trainable weight multiplies it), the hidden d scales and the output b
    # scales per token.
    return Kept(compute=call.tokens * (call.rank + call.o) + call.rank * (call.i + call.o))


VARIANT = VariantInfo(
    name="vera",
    params_cls=VeRAParams,
    family="rank",
    equations="Eq. (24)-(26)",
    merges=True,
    summary="Frozen shared random A, B sliced per layer; trains only vectors d and b.",
    notes=(
        "Scales the update by alpha/r (Eq. (26)); PEFT's VeRA has no scaling, so the same d "
        "and b give alpha/r times PEFT's update (2x PEFT's at the default alpha = 2r). The "
        "PEFT export folds alpha/r into b, so exported models match."
    ),
    peft=True,
    implementation="lorabench.variants.vera",
    cost=AdapterCost(params=_params, frozen=_frozen, activations=_kept, saves_input=never),
)
