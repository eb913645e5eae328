"""LoHA (FedPara, Hyeon-Woo et al.): Hadamard product of two low-rank updates (§II-B1)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.loha import VARIANT, LoHAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    register,
)


class LoHALinear(AdapterLinear):
    """Delta W = s (W1a W1b) (.) (W2a W2b), W?a: (out, rank), W?b: (rank, in), PEFT naming.

    In the paper's notation (x W) hada_w?_b is A_t^? transposed and hada_w?_a is B_t^?.
    """

    variant_name = "loha"
    params_cls = LoHAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        out_f, in_f, rank = self.out_features, self.in_features, self.rank
        self.hada_w1_a = nn.Parameter(torch.empty(out_f, rank, **factory))
        self.hada_w1_b = nn.Parameter(torch.empty(rank, in_f, **factory))
        self.hada_w2_a = nn.Parameter(torch.empty(out_f, rank, **factory))
        self.hada_w2_b = nn.Parameter(torch.empty(rank, in_f, **factory))
        # The rank-r^2 factored path beats one dense (out, in) matmul only for thin layers.
        self.factored = rank * rank * (in_f + out_f) < in_f * out_f
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (16): alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # PEFT's (and FedPara's He) init, in PEFT's draw order: three kaiming-uniform factors,
        # and W2b = 0 so the Hadamard product, hence the initial update, is zero.
        for weight in (self.hada_w1_a, self.hada_w1_b, self.hada_w2_a):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.hada_w2_b.zero_()

    def delta_weight(self) -> Tensor:
        # Eq. (16): s (A1 B1) (.) (A2 B2), as (out, in).
        first = self.hada_w1_a @ self.hada_w1_b
        return first * (self.hada_w2_a @ self.hada_w2_b) * self.scaling

    def khatri_rao_factors(self) -> tuple[Tensor, Tensor]:
        """(U, V) with U V = (W1a W1b) (.) (W2a W2b): U (out, r^2), V (r^2, in).

        Entry (o, i) of the Hadamard product is sum_{j,k} W1a[o,j] W2a[o,k] W1b[j,i] W2b[k,i],
        so U is the row-wise Khatri-Rao product of W1a, W2a and V the column-wise one of W1b, W2b.
        """
        rank = self.rank
        left = (self.hada_w1_a[:, :, None] * self.hada_w2_a[:, None, :]).reshape(-1, rank * rank)
        right = (self.hada_w1_b[:, None, :] * self.hada_w2_b[None, :, :]).reshape(rank * rank, -1)
        return left, right

    def adapter_forward(self, x: Tensor) -> Tensor:
        x = x.to(self.hada_w1_a.dtype)
        if self.factored:
            # Eq. (6)/(16): a rank-r^2 product, O(r^2 (in + out)) per token, no dense update.
            left, right = self.khatri_rao_factors()
            return F.linear(F.linear(x, right), left) * self.scaling
        return F.linear(x, self.delta_weight())

    def _fused_forward(self, x: Tensor) -> Tensor:
        weight = self.base.weight
        return F.linear(x, weight + self.delta_weight().to(weight.dtype), self.base.bias)

    def adapted_forward(self, x: Tensor) -> Tensor:
        if self.factored or (isinstance(self.dropout, nn.Dropout) and self.dropout.training):
            # Eq. (134): dropout on the adapter input only, so base and update stay separate.
            return super().adapted_forward(x)
        # r^2 (in + out) >= in * out: the dense update is cheaper than its factors, so fold it
        # into the weight and do one matmul instead of two.
        return self.run_adapter(self._fused_forward, x)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return 2 * rank * (in_features + out_features)


def peft_loha_config(settings: PeftSettings) -> Any:
    from peft import LoHaConfig

    # PEFT's LoHA has no input dropout (only rank/module dropout): the export is for inference,
    # where ours is off too, so both PEFT dropouts stay at 0.
    return LoHaConfig(
        r=settings.rank,
        alpha=settings.alpha,
        rank_dropout=0.0,
        module_dropout=0.0,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_loha_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # Same names, shapes and scaling alpha / r as PEFT: a plain copy.
    for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        getattr(theirs, name)["default"].copy_(getattr(ours, name))


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoHALinear,
        peft_export=PeftExport(make_config=peft_loha_config, copy_weights=copy_loha_to_peft),
    )
)
