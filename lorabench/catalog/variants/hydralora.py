"""`hydralora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.hydralora."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class HydraLoRAParams:
    heads: int = 4  # number of B matrices (official fine-tuning.sh: lora_b_nums=4)

    def __post_init__(self) -> None:
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, got {self.heads}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # One A (r, in), N heads B_i (out, r) and the router (N, in).
    heads = (params if params is not None else HydraLoRAParams()).heads
    return rank * in_features + heads * rank * out_features + heads * in_features


def _kept(call: Call) -> Kept:
    # The router's cast of the input, the hidden, the gates and their (N, r) outer product
    # per token; the softmax output in fp32.
    n, r = call.params.heads, call.rank
    return Kept(compute=call.tokens * (call.i + r + n + n * r), fp32=call.tokens * n)


VARIANT = VariantInfo(
    name="hydralora",
    params_cls=HydraLoRAParams,
    family="moe",
    equations="Eq. (133)",
    merges=False,
    summary="Asymmetric LoRA: one shared A, a router mixing several B heads.",
    implementation="lorabench.variants.hydralora",
    cost=AdapterCost(params=_params, activations=_kept),
)
