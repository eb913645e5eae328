"""HydraLoRA (Tian et al.): one shared A and several B heads mixed by a router, an asymmetric
LoRA mixture (paper §II-E3, Eq. (133)).

    y = W x + s * (sum_i w_i(x) B_i) A x,   s = alpha / r

A: (r, in) shared by every head, B_i: (out, r), router: (N, in) without bias on the layer input;
w = softmax over all heads (the official code: dense, no top-k and no balancing loss). Initial
update zero: A kaiming-uniform, every B_i = 0, router kaiming-uniform (official init). The
number of heads N (`heads`) is data-dependent in the paper (k-means over the training corpus);
the default 4 is the official fine-tuning script's `lora_b_nums`.

Efficient forward: h = A x once (rank r), then the heads are ONE matmul over the packed
(out, N*r) matrix [B_1 ... B_N] applied to the (..., N*r) outer product w(x) (x) h; nothing of
size out x in and no loop over heads or tokens. The update depends on the input, so it has no
dense delta and never merges.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.hydralora import VARIANT, HydraLoRAParams
from lorabench.variants._moe import kaiming_uniform_, route
from lorabench.variants.base import (
    AdapterLinear,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)


class HydraLoRALinear(AdapterLinear):
    """Eq. (133) with lora_A: (r, in), lora_B: (out, heads * r) = [B_1 ... B_N], lora_router:
    (heads, in)."""

    variant_name = "hydralora"
    params_cls = HydraLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        heads, rank = self.params.heads, self.rank
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, heads * rank, **factory))
        self.lora_router = nn.Parameter(torch.empty(heads, self.in_features, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        init_lora_factors(self.lora_A, self.lora_B)  # shared A as Eq. (88), every B_i = 0
        kaiming_uniform_(self.lora_router)

    def head(self, i: int) -> Tensor:
        """B_i: (out, r)."""
        return self.lora_B[:, i * self.rank : (i + 1) * self.rank]

    def head_weights(self, x: Tensor) -> Tensor:
        """(..., N) fp32 softmax router weights w(x) (dense)."""
        logits = F.linear(x.to(self.lora_router.dtype), self.lora_router)
        return route(logits, self.params.heads).weights

    def mix_heads(self, x: Tensor, weights: Tensor) -> Tensor:
        x = x.to(self.lora_A.dtype)
        hidden = F.linear(x, self.lora_A)  # (..., r)
        mixed = weights.to(hidden.dtype)[..., :, None] * hidden[..., None, :]  # (..., N, r)
        return F.linear(mixed.flatten(-2), self.lora_B) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        return self.mix_heads(x, self.head_weights(x))

    def adapted_forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        # The router sees the layer input; dropout applies to A's input only (official code).
        weights = self.head_weights(x)
        delta = self.run_adapter(self.mix_heads, self.dropout(x), weights)
        return out + delta.to(out.dtype)

    def delta_weight(self) -> Tensor:
        raise NotImplementedError(
            "hydralora: the heads' mixture depends on the input through the router, so there is "
            "no dense delta to merge"
        )

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else HydraLoRAParams()
        heads = params.heads
        return rank * in_features + heads * rank * out_features + heads * in_features


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=HydraLoRALinear,
    )
)
