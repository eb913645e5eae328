"""LoKr (Yeh et al., LyCORIS): Kronecker product of a low-rank and a full factor (§II-B1)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.lokr import VARIANT, LoKrParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    register,
)

# PEFT builds LoKr's second Kronecker factor as one full matrix when its r is at least half that
# factor's larger side; the export asks for this r so every layer gets the full factor C.
PEFT_FULL_FACTOR_RANK = 2**20


def small_factor(dim: int, k: int = -1) -> int:
    """Eqs. (18)-(19): the largest u <= min(k, sqrt(dim)) that divides dim (k = -1: no cap)."""
    cap = math.isqrt(dim) if k == -1 else min(k, math.isqrt(dim))
    return max(u for u in range(1, cap + 1) if dim % u == 0)


class LoKrLinear(AdapterLinear):
    """Delta W = s (B A) kron C with A: (rank, in_d), B: (out_d, rank), C: (out/out_d, in/in_d).

    In the paper's notation (x W) A here is its B_t transposed, B its A_t and C its C_t
    transposed; the Kronecker product of transposes is the transpose of the product.
    """

    variant_name = "lokr"
    params_cls = LoKrParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        k = self.params.k
        self.in_d, self.out_d = (
            small_factor(self.in_features, k),
            small_factor(self.out_features, k),
        )
        # Eq. (20): the low-rank pair on the small factor, a full C on the large one.
        self.lokr_A = nn.Parameter(torch.empty(self.rank, self.in_d, **factory))
        self.lokr_B = nn.Parameter(torch.empty(self.out_d, self.rank, **factory))
        self.lokr_C = nn.Parameter(
            torch.empty(self.out_features // self.out_d, self.in_features // self.in_d, **factory)
        )
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (21): alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # PEFT's LoKr init (its decompose_both layout): kaiming-uniform A and C, B = 0, so the
        # initial update (B A) kron C is zero; the paper's codebase does the same.
        nn.init.kaiming_uniform_(self.lokr_A, a=math.sqrt(5))
        self.lokr_B.zero_()
        nn.init.kaiming_uniform_(self.lokr_C, a=math.sqrt(5))

    def delta_weight(self) -> Tensor:
        # Eq. (21): s (A B) kron C, as (out, in).
        return torch.kron(self.lokr_B @ self.lokr_A, self.lokr_C) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # (M kron C) vec(X) = vec(M X C^T) for X the input viewed as (in_d, in / in_d): two small
        # matmuls, O(out_d in + out in / in_d) per token, never the dense (out, in) update.
        x = x.to(self.lokr_C.dtype)
        lead = x.shape[:-1]
        small = self.lokr_B @ self.lokr_A  # (out_d, in_d), at most sqrt(out) x sqrt(in)
        grid = x.reshape(*lead, self.in_d, self.in_features // self.in_d)
        out = F.linear(torch.matmul(small, grid), self.lokr_C)  # (..., out_d, out / out_d)
        return out.reshape(*lead, self.out_features) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        k = (params or LoKrParams()).k
        in_d, out_d = small_factor(in_features, k), small_factor(out_features, k)
        return rank * (in_d + out_d) + (in_features // in_d) * (out_features // out_d)


def peft_lokr_config(settings: PeftSettings) -> Any:
    from peft import LoKrConfig

    # PEFT cannot hold a low-rank first factor next to a full second one (it decomposes w1 only
    # when r < half w1's larger side, and keeps w2 full only when r >= half w2's larger side,
    # and w1 is the smaller). So: decompose_both=False keeps w1 full (it receives s-free B A),
    # a huge r keeps w2 full (it receives C), and alpha = s * r makes PEFT's alpha / r exactly
    # our s (r is a power of two). The factorisation is the same as ours for k = -1.
    # PEFT's LoKr has no input dropout (only rank/module dropout): both stay 0 for inference.
    rank = PEFT_FULL_FACTOR_RANK
    return LoKrConfig(
        r=rank,
        alpha=settings.alpha / settings.rank * rank,
        decompose_both=False,
        decompose_factor=settings.params.k,
        rank_dropout=0.0,
        module_dropout=0.0,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_lokr_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    if "default" not in theirs.lokr_w1 or "default" not in theirs.lokr_w2:
        raise ValueError("PEFT's LoKr layer did not use full Kronecker factors lokr_w1, lokr_w2")
    w1, w2 = theirs.lokr_w1["default"], theirs.lokr_w2["default"]
    if w1.shape != (ours.out_d, ours.in_d) or w2.shape != ours.lokr_C.shape:
        raise ValueError(
            f"PEFT factorises this layer as {tuple(w1.shape)} kron {tuple(w2.shape)}, ours as "
            f"{(ours.out_d, ours.in_d)} kron {tuple(ours.lokr_C.shape)}: with k > 0 PEFT's "
            "decompose_factor takes k itself whenever k divides the dimension, even above its "
            "square root (Eq. (18) caps at sqrt); export with k = -1"
        )
    w1.copy_(ours.lokr_B @ ours.lokr_A)
    w2.copy_(ours.lokr_C)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoKrLinear,
        peft_export=PeftExport(make_config=peft_lokr_config, copy_weights=copy_lokr_to_peft),
    )
)
