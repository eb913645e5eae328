"""MoSLoRA (Wu et al.): mixture-of-subspaces LoRA, a trainable r x r mixer between A and B
(paper §II-E3).

LoRA's update B A sums r rank-one subspaces with a fixed identity mixer; MoSLoRA learns the mixer:
dW = s B M A. With B = 0 the initial update is zero whatever M starts at (official code:
kaiming-uniform M; the MoSLoRA paper also tries an orthogonal M).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.moslora import VARIANT, MoSLoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)


class MoSLoRALinear(AdapterLinear):
    """dW = s B M A with A: (r, in), M: (r, r), B: (out, r), s = alpha / r."""

    variant_name = "moslora"
    params_cls = MoSLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        rank = self.rank
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_mixer = nn.Parameter(torch.empty(rank, rank, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, rank, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # A as LoRA (Eq. (88)); B = 0 makes the initial update zero.
        init_lora_factors(self.lora_A, self.lora_B)
        if self.params.mixer_init == "orthogonal":
            # Drawn in fp32: QR is not implemented for every low-precision dtype.
            mixer = torch.empty(self.rank, self.rank, device=self.lora_mixer.device)
            self.lora_mixer.copy_(nn.init.orthogonal_(mixer))
        else:
            # Official code: kaiming_uniform_(a=sqrt(5)) on the r x r mixer, bound 1/sqrt(r).
            bound = 1.0 / math.sqrt(self.rank)
            self.lora_mixer.uniform_(-bound, bound)

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_mixer @ self.lora_A) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Three thin matmuls, O(r * (in + r + out)) per token.
        x = x.to(self.lora_A.dtype)
        hidden = F.linear(F.linear(x, self.lora_A), self.lora_mixer)
        return F.linear(hidden, self.lora_B) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank * (in_features + out_features) + rank * rank


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=MoSLoRALinear,
        peft_export=None,
    )
)
