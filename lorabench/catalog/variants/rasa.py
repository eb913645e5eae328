"""`rasa`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.rasa."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._layout import group_sizes


@dataclass(frozen=True)
class RaSAParams:
    # Paper, variant-specific hyperparameters: "The shared rank k is set to 1".
    shared_rank: int = 1

    def __post_init__(self) -> None:
        if self.shared_rank < 1:
            raise ValueError(f"shared_rank must be >= 1, got {self.shared_rank}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    params = params if params is not None else RaSAParams()
    return (rank - params.shared_rank) * (in_features + out_features)  # the local A^L, B^L


def _shared(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    # Per group of L same-kind, same-shape modules: A^S (kL, in), B^S (out, kL) and each
    # member's diagonal D of width (r - k) + kL.
    k = (params if params is not None else RaSAParams()).shared_rank
    return sum(k * size * (i + o) + size * (rank - k + k * size)
               for (_, i, o), size in group_sizes(sites).items())  # fmt: skip


def _kept(call: Call) -> Kept:
    # Shared and local hiddens, each kept before and after D scales them.
    k = call.params.shared_rank
    size = group_sizes(call.sites)[(call.site.kind, call.i, call.o)]
    return Kept(compute=2 * call.tokens * (k * size + call.rank - k))


VARIANT = VariantInfo(
    name="rasa",
    params_cls=RaSAParams,
    family="rank",
    equations="Eq. (27)",
    merges=True,
    summary=(
        "r-k local ranks plus a pool of k ranks per module shared by all modules of the same "
        "kind and shape, weighted by a trainable diagonal D; effective rank r-k+kL."
    ),
    implementation="lorabench.variants.rasa",
    cost=AdapterCost(params=_params, shared=_shared, activations=_kept),
)
