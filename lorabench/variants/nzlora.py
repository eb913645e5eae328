"""NZLoRA (Li et al., "Beyond Zero Initialization"): both factors random, no residual
(paper §II-D1, Eq. (89))."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lorabench.variants.base import VariantSpec, register
from lorabench.variants.lora import LoRALinear


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


class NZLoRALinear(LoRALinear):
    """W = W~ + s * B A with A and B both non-zero at init and W~ left as it is: NZLoRA omits
    pretrained-weight manipulation, so the fresh layer is NOT its base."""

    variant_name = "nzlora"
    params_cls = NZLoRAParams
    zero_init = False

    def init_bounds(self) -> tuple[float, float]:
        # Eq. (89) with gamma on the variance: bound sqrt(gamma / m) for A and for B alike.
        m = self.in_features
        return math.sqrt(self.params.gamma_a / m), math.sqrt(self.params.gamma_b / m)

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        bound_a, bound_b = self.init_bounds()
        self.lora_A.uniform_(-bound_a, bound_a)
        self.lora_B.uniform_(-bound_b, bound_b)


SPEC = register(
    VariantSpec(
        name="nzlora",
        layer_cls=NZLoRALinear,
        params_cls=NZLoRAParams,
        family="initialization",
        equations="Eq. (89)",
        merges=True,
        summary="LoRA with both A and B drawn uniformly at init (gamma = 16) and no residual.",
    )
)
