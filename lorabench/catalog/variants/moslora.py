"""`moslora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.moslora."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo

MIXER_INITS = ("kaiming", "orthogonal")


@dataclass(frozen=True)
class MoSLoRAParams:
    # The paper lists no MoSLoRA hyperparameters; the original code's mixer init is kaiming.
    mixer_init: str = "kaiming"

    def __post_init__(self) -> None:
        if self.mixer_init not in MIXER_INITS:
            raise ValueError(f"mixer_init must be one of {MIXER_INITS}, got {self.mixer_init!r}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return rank * (in_features + out_features) + rank * rank  # A, B and the r x r mixer


def _kept(call: Call) -> Kept:
    return Kept(compute=2 * call.tokens * call.rank)  # A x and M A x


VARIANT = VariantInfo(
    name="moslora",
    params_cls=MoSLoRAParams,
    family="moe",
    equations="§II-E3 (MoSLoRA): dW = s B M A",
    merges=True,
    summary="LoRA with a trainable r x r mixer M between A and B (dW = s B M A); B starts at 0",
    implementation="lorabench.variants.moslora",
    cost=AdapterCost(params=_params, activations=_kept),
)
