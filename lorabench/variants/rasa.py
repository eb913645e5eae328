"""RaSA (He et al.): rank sharing across layers of the same module kind (paper §II-B2, Eq. (27)).

Each adapter keeps r - k local ranks (A^L, B^L) and uses a pool of k ranks per module of its
group, shared by the whole group: A^S has k * L rows and B^S k * L columns, where L is the number
of modules in the group. A trainable diagonal D weights the local and shared ranks per module, so
the effective rank is (r - k) + k * L at LoRA's parameter count (plus D).

Groups are "modules of the same type": same `Site.kind` (last name component, e.g. "query") and
same (in, out) shape, so the shared matrices fit every member without slicing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.rasa import VARIANT, RaSAParams
from lorabench.variants.base import (
    AdapterLinear,
    SharedParameters,
    Site,
    VariantSpec,
    adapter_factory,
    register,
)

GroupKey = tuple[str, int, int]


# --- grouping helpers (also used by DenseLoRA) ----------------------------------------------------
def group_key(site: Site) -> GroupKey:
    """Modules of the same type: same kind and same (in, out) shape."""
    return (site.kind, site.in_features, site.out_features)


def group_name(key: GroupKey) -> str:
    # A valid, unambiguous submodule name: kinds hold no dots, and the shape suffix is numeric.
    kind, in_features, out_features = key
    return f"g_{kind}_{in_features}x{out_features}"


def group_sites(sites: Iterable[Site]) -> dict[GroupKey, list[str]]:
    """Member names per group, in first-seen order (a name is listed once)."""
    groups: dict[GroupKey, list[str]] = {}
    for site in sites:
        names = groups.setdefault(group_key(site), [])
        if site.name not in names:
            names.append(site.name)
    return groups


class SiteGroups(SharedParameters):
    """Shared parameters, one submodule per group; `locate(site)` finds a layer's group."""

    def __init__(self, groups: dict[GroupKey, list[str]], make_group) -> None:
        super().__init__()
        self.groups = nn.ModuleDict()
        self.members: dict[str, list[str]] = {}
        for key, names in groups.items():
            name = group_name(key)
            self.groups[name] = make_group(key, len(names))
            self.members[name] = list(names)

    def locate(self, site: Site) -> tuple[nn.Module, int]:
        name = group_name(group_key(site))
        if name not in self.members or site.name not in self.members[name]:
            raise ValueError(
                f"layer {site.name!r} ({site.kind}, {site.in_features}->{site.out_features}) "
                "is not among the sites its shared parameters were built for"
            )
        return self.groups[name], self.members[name].index(site.name)


# --- RaSA -----------------------------------------------------------------------------------------


def _kaiming_uniform_(weight: Tensor) -> None:
    # kaiming_uniform_(a=sqrt(5)) on an (rows, fan_in) weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(weight.shape[1])
    weight.uniform_(-bound, bound)


def initial_d(rank: int, shared_rank: int, members: int, alpha: float) -> Tensor:
    """D's initial diagonal (LoRAFactory): alpha/2 split evenly over the local ranks, alpha/2
    over the k*L pooled ranks, so Eq. (27) needs no separate alpha/r factor."""
    local, pooled = rank - shared_rank, shared_rank * members
    d = torch.full((local + pooled,), 0.5 * alpha / pooled)
    if local:
        d[:local] = 0.5 * alpha / local
    return d


class RaSAGroup(nn.Module):
    """A^S: (k*L, in), B^S: (out, k*L) shared by the group; row i of D is member i's diagonal
    (its width (r-k) + k*L depends on the group size, so it lives with the group)."""

    def __init__(self, key: GroupKey, members: int, *, rank: int, alpha: float,
                 params: RaSAParams, device: Any, dtype: Any) -> None:  # fmt: skip
        super().__init__()
        _, in_features, out_features = key
        k = params.shared_rank
        pooled = k * members
        factory = {"device": device, "dtype": dtype}
        self.rank, self.shared_rank, self.alpha, self.size = rank, k, alpha, members
        self.lora_A = nn.Parameter(torch.empty(pooled, in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(out_features, pooled, **factory))
        self.lora_D = nn.Parameter(torch.empty(members, rank - k + pooled, **factory))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        _kaiming_uniform_(self.lora_A)
        self.lora_B.zero_()  # with B^L = 0 too, the initial update is zero
        d = initial_d(self.rank, self.shared_rank, self.size, self.alpha)
        self.lora_D.copy_(d.expand_as(self.lora_D))


class RaSALinear(AdapterLinear):
    """Eq. (27): dW = [B^L B^S] D [A^L; A^S], A^L: (r-k, in), B^L: (out, r-k) local."""

    variant_name = "rasa"
    params_cls = RaSAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.local_rank = self.rank - self.params.shared_rank
        factory = adapter_factory(base)
        if self.local_rank > 0:
            self.lora_A = nn.Parameter(torch.empty(self.local_rank, self.in_features, **factory))
            self.lora_B = nn.Parameter(torch.empty(self.out_features, self.local_rank, **factory))
        else:  # r == k: every rank comes from the shared pool
            self.register_parameter("lora_A", None)
            self.register_parameter("lora_B", None)
        group, self.member = self.shared.locate(self.site)
        if (group.rank, group.shared_rank) != (self.rank, self.params.shared_rank):
            raise ValueError("RaSA layer and its shared group disagree on rank or shared_rank")
        # A plain reference, like `shared`: the group's parameters are registered once.
        object.__setattr__(self, "_group", group)
        self.reset_adapter_parameters()

    @property
    def group(self) -> RaSAGroup:
        return self.__dict__["_group"]

    @property
    def scaling(self) -> float:
        # Eq. (27) has no alpha/r factor: alpha enters through D's initial values.
        return 1.0

    @property
    def effective_rank(self) -> int:
        return self.local_rank + self.params.shared_rank * self.group.size

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        if self.lora_A is not None:
            _kaiming_uniform_(self.lora_A)
            self.lora_B.zero_()
        d = initial_d(self.rank, self.params.shared_rank, self.group.size, self.alpha)
        self.group.lora_D[self.member].copy_(d)

    def _diagonal(self) -> tuple[Tensor, Tensor]:
        d = self.group.lora_D[self.member]
        return d[: self.local_rank], d[self.local_rank :]

    def delta_weight(self) -> Tensor:
        d_local, d_shared = self._diagonal()
        group = self.group
        delta = (group.lora_B * d_shared) @ group.lora_A
        if self.lora_A is not None:
            delta = delta + (self.lora_B * d_local) @ self.lora_A
        return delta

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eq. (27) factored: x -> [A^L; A^S] -> * D -> [B^L B^S], never an out x in matrix.
        d_local, d_shared = self._diagonal()
        group = self.group
        x = x.to(group.lora_A.dtype)
        out = F.linear(F.linear(x, group.lora_A) * d_shared, group.lora_B)
        if self.lora_A is not None:
            out = out + F.linear(F.linear(x, self.lora_A) * d_local, self.lora_B)
        return out

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else RaSAParams()
        return (rank - params.shared_rank) * (in_features + out_features)

    @classmethod
    def _check(cls, rank: int, params: RaSAParams) -> None:
        if params.shared_rank > rank:
            raise ValueError(
                f"RaSA's shared_rank ({params.shared_rank}) cannot exceed the rank ({rank})"
            )

    @classmethod
    def make_shared(
        cls, sites: list[Site], *, rank: int, alpha: float, params: Any, device: Any, dtype: Any
    ) -> nn.Module:
        cls._check(rank, params)

        def make_group(key: GroupKey, members: int) -> RaSAGroup:
            return RaSAGroup(key, members, rank=rank, alpha=float(alpha), params=params,
                             device=device, dtype=dtype)  # fmt: skip

        return SiteGroups(group_sites(sites), make_group)

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        params = params if params is not None else RaSAParams()
        k = params.shared_rank
        total = 0
        for (_, in_features, out_features), names in group_sites(sites).items():
            members = len(names)
            total += k * members * (in_features + out_features)  # A^S, B^S
            total += members * (rank - k + k * members)  # one D per member
        return total


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=RaSALinear,
        peft_export=None,
    )
)
