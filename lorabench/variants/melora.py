"""MeLoRA (Ren et al.): mini-ensemble LoRA, k mini-LoRAs on the block diagonal
(paper §II-B1, Eqs. (14)-(15)).

The input is split into k slices and the output into k slices; mini-LoRA i (rank r' = r) maps
input slice i to output slice i. The update is block-diagonal with rank up to k * r at LoRA's
parameter count r * (in + out): the paper's runs use k = 2, an "overall rank of 16" at r = 8.

Storage: the k mini A^i (r, in_i) sit side by side in one (r, in) `lora_A` (columns of slice i
belong to block i) and the k mini B^i (out_i, r) stacked in one (out, r) `lora_B`. Dimensions
that k does not divide get uneven slices (the first ones one larger); a dimension smaller than k
gets fewer blocks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.melora import VARIANT, MeLoRAParams
from lorabench.variants.base import AdapterLinear, VariantSpec, adapter_factory, register


def split_sizes(total: int, parts: int) -> list[int]:
    """`parts` near-equal sizes summing to `total`, the first `total % parts` one larger."""
    base, extra = divmod(total, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


class MeLoRALinear(AdapterLinear):
    """Eq. (14): dW = s * diag(B^1 A^1, ..., B^k A^k), A^i: (r, in_i), B^i: (out_i, r)."""

    variant_name = "melora"
    params_cls = MeLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.num_blocks = min(self.params.blocks, self.in_features, self.out_features)
        self.in_sizes = split_sizes(self.in_features, self.num_blocks)
        self.out_sizes = split_sizes(self.out_features, self.num_blocks)
        self.even = len(set(self.in_sizes)) == 1 and len(set(self.out_sizes)) == 1
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, self.rank, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # s = alpha / r for every mini-LoRA (r' = r).
        return self.alpha / self.rank

    @property
    def effective_rank(self) -> int:
        return sum(min(self.rank, i, o) for i, o in zip(self.in_sizes, self.out_sizes, strict=True))

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # Each mini A^i as LoRA's A (Eq. (88)) over its own fan-in in_i; every B^i = 0.
        for block in self.lora_A.split(self.in_sizes, dim=1):
            bound = 1.0 / math.sqrt(block.shape[1])
            block.uniform_(-bound, bound)
        self.lora_B.zero_()

    def mini_loras(self) -> list[tuple[Tensor, Tensor]]:
        """The mini (A^i, B^i) pairs, as views of the stored parameters."""
        a_blocks = self.lora_A.split(self.in_sizes, dim=1)
        b_blocks = self.lora_B.split(self.out_sizes, dim=0)
        return list(zip(a_blocks, b_blocks, strict=True))

    def delta_weight(self) -> Tensor:
        return torch.block_diag(*(b @ a for a, b in self.mini_loras())) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        x = x.to(self.lora_A.dtype)
        out = self._forward_bmm(x) if self.even else self._forward_blocks(x)
        return out * self.scaling

    def _forward_bmm(self, x: Tensor) -> Tensor:
        # Equal slices: one batched matmul per factor over the k blocks (views, no copies of A/B).
        k, rank = self.num_blocks, self.rank
        in_block, out_block = self.in_features // k, self.out_features // k
        lead = x.shape[:-1]
        xs = x.reshape(-1, k, in_block).transpose(0, 1)  # (k, N, in/k)
        a = self.lora_A.view(rank, k, in_block).permute(1, 2, 0)  # (k, in/k, r)
        b = self.lora_B.view(k, out_block, rank).transpose(1, 2)  # (k, r, out/k)
        out = torch.bmm(torch.bmm(xs, a), b)  # (k, N, out/k)
        return out.transpose(0, 1).reshape(*lead, self.out_features)

    def _forward_blocks(self, x: Tensor) -> Tensor:
        # Uneven slices: one thin LoRA per block, outputs concatenated.
        pieces = x.split(self.in_sizes, dim=-1)
        outs = [
            F.linear(F.linear(p, a), b) for p, (a, b) in zip(pieces, self.mini_loras(), strict=True)
        ]
        return torch.cat(outs, dim=-1)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        # k blocks of r * (in/k + out/k): LoRA's count at rank r, whatever k.
        return rank * (in_features + out_features)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=MeLoRALinear,
        peft_export=None,
    )
)
