"""`nzlora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.nzlora."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class NZLoRAParams:
    """gamma_a, gamma_b: init scales of A and B (paper: 16 each). Each factor is drawn from
    U(-sqrt(gamma / m), sqrt(gamma / m)), m = in_features: gamma multiplies the variance of
    LoRA's Kaiming-uniform init (gamma = 1 is Eq. (88)'s bound), as in the paper's own code."""

    gamma_a: float = 16.0
    gamma_b: float = 16.0

    def __post_init__(self) -> None:
        for name in ("gamma_a", "gamma_b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


VARIANT = VariantInfo(
    name="nzlora",
    params_cls=NZLoRAParams,
    family="initialization",
    equations="Eq. (89)",
    merges=True,
    summary="LoRA with both A and B drawn uniformly at init (gamma = 16) and no residual.",
    implementation="lorabench.variants.nzlora",
)
