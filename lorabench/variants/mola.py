"""MoLA (Gao et al.): LoRA experts with a layer-wise expert count, "higher layers need more
LoRA experts" (paper §II-E3, Eq. (124)-(126)).

Each adapted module of transformer block l holds N_l LoRA experts, each of the job's rank r
(MoLA: every expert is a rank-r LoRA, scaling alpha / r, A kaiming-uniform, B = 0, so the fresh
update is zero), and a bias-free router; tokens take the top-2 experts with renormalised
softmax gates (Eq. (125), MoLA's Mixtral-style routing).

Allocation: `allocation` lists expert counts for equal depth groups, lowest layers first; the
default "2,4,6,8" is MoLA's triangle (MoLA-△: for 32 layers, layers 1-8 get 2 experts, 9-16 get
4, ...). Block l of a model with D blocks is in group floor(l * G / D), G = number of groups.
l is the first all-digit component of the module's name ("bert.encoder.layer.3.attention.self.
query" -> 3) and D = 1 + the largest index among the wrapped modules; modules without an index
(a pooler after the blocks, or a standalone layer) take the last group's count.

Because N_l depends on where a module sits in the whole model, the allocation is decided once
by `make_shared` (which sees every wrapped site), and each module's experts are registered in
that model-level module (one entry per site, no parameter is shared between modules); a layer
finds its own through its site. Their count is therefore `shared_param_count`.

Balancing: MoLA's load-balancing loss per module, N_l * sum_i f_i P_i with f normalised over the
k picks of every token (Eq. (126) divided by k), summed over modules, weight 0.001 (MoLA's
router_aux_loss_coef). Forward: the experts are packed and mixed by dense masking like the
other MoE variants (see _moe.py): N_l * r ranks per token, no loop over tokens or experts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.mola import VARIANT, MoLAParams, parse_allocation
from lorabench.variants._moe import (
    RoutedLoRALinear,
    RouterOutput,
    kaiming_uniform_,
    layer_index,
    summed_layer_loss,
    switch_balance_loss,
)
from lorabench.variants.base import SharedParameters, Site, VariantSpec, init_lora_factors, register


def allocate(sites: list[Site], params: MoLAParams) -> list[int]:
    """N_l for every site, in order (see the module docstring)."""
    counts = parse_allocation(params.allocation)
    indices = [layer_index(site.name) for site in sites]
    known = [i for i in indices if i is not None]
    depth = max(known) + 1 if known else 1
    return [counts[-1] if i is None else counts[i * len(counts) // depth] for i in indices]


class MoLAExperts(SharedParameters):
    """Every wrapped module's experts, keyed by the module's position among the sites."""

    def __init__(self, sites: list[Site], *, rank: int, params: MoLAParams, device: Any,
                 dtype: Any) -> None:  # fmt: skip
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.keys: dict[str, str] = {}
        self.experts: dict[str, int] = {}
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.lora_router = nn.ParameterDict()
        for i, (site, n) in enumerate(zip(sites, allocate(sites, params), strict=True)):
            key = str(i)
            self.keys[site.name], self.experts[key] = key, n
            a = torch.empty(n * rank, site.in_features, **factory)
            b = torch.empty(site.out_features, n * rank, **factory)
            router = torch.empty(n, site.in_features, **factory)
            init_lora_factors(a, b)
            kaiming_uniform_(router)
            self.lora_A[key] = nn.Parameter(a)
            self.lora_B[key] = nn.Parameter(b)
            self.lora_router[key] = nn.Parameter(router)

    def key_of(self, site: Site) -> str:
        if site.name not in self.keys:
            raise ValueError(
                f"layer {site.name!r} is not among the sites MoLA allocated experts for"
            )
        return self.keys[site.name]


class MoLALinear(RoutedLoRALinear):
    """Eq. (124) with N_l rank-r experts, N_l from the layer-wise allocation."""

    variant_name = "mola"
    params_cls = MoLAParams

    def make_expert_ranks(self) -> list[int]:
        # A plain string: the experts live in the model-level module (registered once there).
        self.expert_key = self.shared.key_of(self.site)
        return [self.rank] * self.shared.experts[self.expert_key]

    def create_factors(self, total_rank: int, factory: dict[str, Any]) -> None:
        pass  # make_shared created them

    @property
    def lora_A(self) -> nn.Parameter:
        return self.shared.lora_A[self.expert_key]

    @property
    def lora_B(self) -> nn.Parameter:
        return self.shared.lora_B[self.expert_key]

    @property
    def lora_router(self) -> nn.Parameter:
        return self.shared.lora_router[self.expert_key]

    @property
    def top_k(self) -> int:
        return min(self.params.top_k, self.n_experts)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        init_lora_factors(self.lora_A, self.lora_B)
        kaiming_uniform_(self.lora_router)

    @classmethod
    def make_shared(cls, sites: list[Site], *, rank: int, alpha: float, params: Any,
                    device: torch.device, dtype: torch.dtype) -> nn.Module:  # fmt: skip
        return MoLAExperts(sites, rank=rank, params=params, device=device, dtype=dtype)

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        params = params if params is not None else MoLAParams()
        return sum(
            n * (rank * (site.in_features + site.out_features) + site.in_features)
            for site, n in zip(sites, allocate(sites, params), strict=True)
        )

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return 0  # all of a layer's experts are held by the model-level MoLAExperts


def mola_layer_loss(layer: MoLALinear, stats: RouterOutput) -> Tensor:
    # MoLA normalises the routed fraction over all k picks: Eq. (126) / k.
    return switch_balance_loss(stats.probs, stats.mask) / layer.top_k


def mola_extra_loss(model: nn.Module, params: MoLAParams) -> Tensor | None:
    return summed_layer_loss(model, MoLALinear, params.aux_loss_coeff, mola_layer_loss)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=MoLALinear,
        extra_loss=mola_extra_loss,
    )
)
