"""`denselora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.denselora."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._layout import group_sizes


@dataclass(frozen=True)
class DenseLoRAParams:
    """No hyperparameters beyond rank and alpha (the paper raises those to 192 and 384)."""


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    return rank * rank  # the module's own C


def _shared(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    # One A^S (r, in) and B^S (out, r) per group of same-kind, same-shape modules.
    return sum(rank * (i + o) for (_, i, o) in group_sizes(sites))


def _kept(call: Call) -> Kept:
    # The layer's order of products (fewest multiply-adds): a chain of two rank-r hiddens for
    # few tokens, else one hidden and the (out, r) or (r, in) merged factor per call.
    r, n = call.rank, call.tokens
    if n <= min(call.i, call.o):
        return Kept(compute=2 * n * r)
    return Kept(compute=n * r + r * (call.o if call.o <= call.i else call.i))


VARIANT = VariantInfo(
    name="denselora",
    params_cls=DenseLoRAParams,
    family="rank",
    equations="Eq. (33)",
    merges=True,
    summary=(
        "A^S, B^S shared by modules of the same kind, a module-specific r x r C between them; "
        "the paper runs it at r=192, alpha=384 (set via the job's rank/alpha)."
    ),
    implementation="lorabench.variants.denselora",
    cost=AdapterCost(params=_params, shared=_shared, activations=_kept),
)
