"""LoRA (Hu et al.): the baseline every other variant is compared against."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.lora import VARIANT, LoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)


class LoRALinear(AdapterLinear):
    """W = W~ + s * B A with A: (rank, in), B: (out, rank), PEFT naming and shapes."""

    variant_name = "lora"
    params_cls = LoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        rank = self.rank
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, rank, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (1): s = alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # Eq. (88); same draw as PEFT's kaiming_uniform_(a=sqrt(5)), so seeds line up with it.
        init_lora_factors(self.lora_A, self.lora_B)

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eq. (134): two thin matmuls, O(r*(in+out)) per token instead of a dense delta.
        x = x.to(self.lora_A.dtype)
        return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank * (in_features + out_features)


def peft_lora_config(settings: PeftSettings, **extra: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
        **extra,
    )


@torch.no_grad()
def copy_lora_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    theirs.lora_A["default"].weight.copy_(ours.lora_A)
    theirs.lora_B["default"].weight.copy_(ours.lora_B)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRALinear,
        peft_export=PeftExport(make_config=peft_lora_config, copy_weights=copy_lora_to_peft),
    )
)
