"""DenseLoRA (Mu et al.): shared low-rank A^S, B^S with a module-specific dense r x r C
(paper §II-B2, Eq. (33)).

A^S (the "encoder") and B^S (the "decoder") are trainable and shared by all modules of the same
kind and shape; each module trains only C. The paper's runs use r = 24 * 8 = 192 and
alpha = 48 * 8 = 384, set through the job's rank and alpha. Eq. (33) is linear, so it merges; the
original code also puts GELUs around C, which Eq. (33) (and so this module) leaves out.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.denselora import VARIANT, DenseLoRAParams
from lorabench.variants.base import AdapterLinear, Site, VariantSpec, adapter_factory, register
from lorabench.variants.rasa import GroupKey, SiteGroups, group_sites


class DenseLoRAGroup(nn.Module):
    """A^S: (r, in) and B^S: (out, r), shared by every module of one group."""

    def __init__(self, key: GroupKey, *, rank: int, device: Any, dtype: Any) -> None:
        super().__init__()
        _, in_features, out_features = key
        factory = {"device": device, "dtype": dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, **factory))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Official code: encoder kaiming_uniform_(a=sqrt(5)), decoder zero -> zero initial update.
        bound = 1.0 / math.sqrt(self.lora_A.shape[1])
        self.lora_A.uniform_(-bound, bound)
        self.lora_B.zero_()


class DenseLoRALinear(AdapterLinear):
    """Eq. (33): dW = (alpha/r) B^S C A^S with C: (r, r) the only module-specific parameter."""

    variant_name = "denselora"
    params_cls = DenseLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        self.lora_C = nn.Parameter(torch.empty(self.rank, self.rank, **factory))
        group, _ = self.shared.locate(self.site)
        # A plain reference, like `shared`: the group's parameters are registered once.
        object.__setattr__(self, "_group", group)
        self.reset_adapter_parameters()

    @property
    def group(self) -> DenseLoRAGroup:
        return self.__dict__["_group"]

    @property
    def scaling(self) -> float:
        # Eq. (33): alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # Official code: C ("lora_m") kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(r); the zero
        # initial update comes from the shared B^S = 0.
        bound = 1.0 / math.sqrt(self.rank)
        self.lora_C.uniform_(-bound, bound)

    def delta_weight(self) -> Tensor:
        group = self.group
        return (group.lora_B @ self.lora_C @ group.lora_A) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eq. (33) as thin matmuls x -> A^S -> C -> B^S. With more tokens than min(in, out),
        # folding C into the smaller factor once costs less than r^2 per token (r is large:
        # 192 in the paper's runs).
        group = self.group
        x = x.to(self.lora_C.dtype)
        tokens = x.numel() // max(self.in_features, 1)
        if tokens <= min(self.in_features, self.out_features):
            hidden = F.linear(F.linear(x, group.lora_A), self.lora_C)
            return F.linear(hidden, group.lora_B) * self.scaling
        if self.out_features <= self.in_features:
            return F.linear(F.linear(x, group.lora_A), group.lora_B @ self.lora_C) * self.scaling
        return F.linear(F.linear(x, self.lora_C @ group.lora_A), group.lora_B) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank * rank

    @classmethod
    def make_shared(
        cls, sites: list[Site], *, rank: int, alpha: float, params: Any, device: Any, dtype: Any
    ) -> nn.Module:
        def make_group(key: GroupKey, members: int) -> DenseLoRAGroup:
            return DenseLoRAGroup(key, rank=rank, device=device, dtype=dtype)

        return SiteGroups(group_sites(sites), make_group)

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        return sum(rank * (i + o) for (_, i, o) in group_sites(sites))


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=DenseLoRALinear,
        peft_export=None,
    )
)
