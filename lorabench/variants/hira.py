"""HiRA (Huang et al.): Hadamard product of the frozen weight and a low-rank update (§II-B1)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.hira import VARIANT, HiRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)


class HiRALinear(AdapterLinear):
    """Delta W = W * (s B A) (elementwise) with A: (rank, in), B: (out, rank), PEFT naming."""

    variant_name = "hira"
    params_cls = HiRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        self.hira_A = nn.Parameter(torch.empty(self.rank, self.in_features, **factory))
        self.hira_B = nn.Parameter(torch.empty(self.out_features, self.rank, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (17): alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # LoRA's init, as in HiRA's and PEFT's code: kaiming-uniform A, and B = 0 so the
        # Hadamard update starts at zero.
        init_lora_factors(self.hira_A, self.hira_B)

    def delta_weight(self) -> Tensor:
        # Eq. (17): Delta W = W (.) (s B A).
        low_rank = self.hira_B @ self.hira_A
        return self.base.weight.to(low_rank.dtype) * low_rank * self.scaling

    def effective_weight(self) -> Tensor:
        # Eq. (17): W + W (.) (s B A) = W (.) (1 + s B A).
        weight = self.base.weight
        return torch.addcmul(weight, weight, self.hira_B @ self.hira_A, value=self.scaling)

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Only used with dropout in training, where the adapter input differs from the base's.
        # The Hadamard product has no factored form: a dense (out, in) update is inherent.
        delta = self.delta_weight()
        return F.linear(x.to(delta.dtype), delta)

    def _fused_forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.base.bias)

    def adapted_forward(self, x: Tensor) -> Tensor:
        if isinstance(self.dropout, nn.Dropout) and self.dropout.training:
            # Eq. (134): dropout on the adapter input only, so base and update stay separate.
            return super().adapted_forward(x)
        # The factored path would cost r*in*out per token; one matmul with W (.) (1 + s B A)
        # costs in*out per token plus r*in*out once per call.
        return self.run_adapter(self._fused_forward, x)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank * (in_features + out_features)


def peft_hira_config(settings: PeftSettings) -> Any:
    from peft import HiraConfig

    return HiraConfig(
        r=settings.rank,
        hira_dropout=settings.dropout,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_hira_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # PEFT's HiRA has no scaling (Delta W = W (.) B A): fold s = alpha / r into B.
    theirs.hira_A["default"].copy_(ours.hira_A)
    theirs.hira_B["default"].copy_(ours.hira_B * ours.scaling)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=HiRALinear,
        peft_export=PeftExport(make_config=peft_hira_config, copy_weights=copy_hira_to_peft),
    )
)
