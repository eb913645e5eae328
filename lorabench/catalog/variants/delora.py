"""`delora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.delora."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class DeLoRAParams:
    """delora_lambda: initial value of the trainable strength lambda (the paper's 8).
    seed: seed of the kaiming-uniform init of A and B (mixed with each layer's name)."""

    delora_lambda: float = 8.0
    seed: int = 0


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return rank * (in_features + out_features) + 1  # A, B and lambda


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # The initial factors A0, B0 (adapter dtype) and ||W|| per input column (base dtype).
    return Kept(fp32=sum(rank * (s.in_features + s.out_features) for s in sites),
                base=sum(s.in_features for s in sites))  # fmt: skip


def _kept(call: Call) -> Kept:
    # Live path: the hidden and its scaled copy; frozen path: its hidden (lambda scales it);
    # per call the casts of the frozen A0, B0 that the input's gradient reads.
    return Kept(compute=3 * call.tokens * call.rank + call.rank * (call.i + call.o))


VARIANT = VariantInfo(
    name="delora",
    params_cls=DeLoRAParams,
    family="optimization",
    equations="Eqs. (69)-(70)",
    merges=True,
    summary="Normalised rank-one directions scaled by a learnt lambda ||W|| / r (bounded).",
    peft=True,
    implementation="lorabench.variants.delora",
    cost=AdapterCost(params=_params, frozen=_frozen, activations=_kept),
)
