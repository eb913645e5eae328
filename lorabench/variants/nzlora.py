"""NZLoRA (Li et al., "Beyond Zero Initialization"): both factors random, no residual
(paper §II-D1, Eq. (89))."""

from __future__ import annotations

import math

import torch

from lorabench.catalog.variants.nzlora import VARIANT, NZLoRAParams
from lorabench.variants.base import VariantSpec, register
from lorabench.variants.lora import LoRALinear


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
        info=VARIANT,
        layer_cls=NZLoRALinear,
    )
)
