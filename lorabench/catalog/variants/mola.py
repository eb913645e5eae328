"""`mola`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.mola."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._layout import layer_index, routed


def parse_allocation(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"allocation must be comma-separated positive ints, got {text!r}")
    return counts


@dataclass(frozen=True)
class MoLAParams:
    # MoLA-△ (2-4-6-8 from the lowest to the highest quarter of the blocks), top-2 routing,
    # MoLA's router_aux_loss_coef 0.001.
    allocation: str = "2,4,6,8"
    top_k: int = 2
    aux_loss_coeff: float = 0.001

    def __post_init__(self) -> None:
        parse_allocation(self.allocation)
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.aux_loss_coeff < 0:
            raise ValueError(f"aux_loss_coeff must be >= 0, got {self.aux_loss_coeff}")


def allocate(sites: Sequence[SiteShape], params: MoLAParams) -> list[int]:
    """N_l for every site, in order (as `variants.mola.allocate`): block l of D blocks is in
    group floor(l * G / D); a module without a block index takes the last group's count."""
    counts = parse_allocation(params.allocation)
    indices = [layer_index(site.name) for site in sites]
    known = [i for i in indices if i is not None]
    depth = max(known) + 1 if known else 1
    return [counts[-1] if i is None else counts[i * len(counts) // depth] for i in indices]


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return 0  # every module's experts are held by the model-level module


def _shared(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    # N_l rank-r experts and a router row per expert, for every module.
    params = params if params is not None else MoLAParams()
    return sum(n * (rank * (s.in_features + s.out_features) + s.in_features)
               for s, n in zip(sites, allocate(sites, params), strict=True))  # fmt: skip


def _kept(call: Call) -> Kept:
    experts = allocate(call.sites, call.params)[call.sites.index(call.site)]
    return routed(call, experts * call.rank, experts)


VARIANT = VariantInfo(
    name="mola",
    params_cls=MoLAParams,
    family="moe",
    equations="Eq. (124), (125), (126)",
    merges=False,
    summary="Top-2 LoRA experts with more experts in higher layers (2-4-6-8 allocation).",
    implementation="lorabench.variants.mola",
    cost=AdapterCost(params=_params, shared=_shared, activations=_kept),
)
