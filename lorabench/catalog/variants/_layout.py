"""How variants lay ranks, experts and groups over the wrapped layers, in closed form: shared by
the declarations' cost formulas (the implementations in `lorabench.variants` have their own
copies, which tests/test_memory_estimate.py compares against these through the counts)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lorabench.catalog.cost import Call, Kept, SiteShape


def routed(call: Call, total_rank: int, experts: int) -> Kept:
    """What a routed-experts forward (`variants._moe.RoutedLoRALinear`) keeps per token: the
    router's cast of the input, the packed hidden (R), its per-rank gates, their product and
    the gate lookup (4 R), and the router's fp32 softmax, top-k mask and weights (about 4 E)."""
    return Kept(compute=call.tokens * (call.i + 4 * total_rank), fp32=4 * call.tokens * experts)


def split_ranks(rank: int, experts: int) -> list[int]:
    """Ranks of min(experts, rank) experts summing to `rank` (as `variants._moe.split_ranks`)."""
    n = max(1, min(experts, rank))
    base, extra = divmod(rank, n)
    return [base + 1] * extra + [base] * (n - extra)


def group_sizes(sites: Sequence[SiteShape]) -> dict[tuple[str, int, int], int]:
    """Members per group of "modules of the same type" (kind and shape), as RaSA and DenseLoRA
    group them (`variants.rasa.group_sites`); a name is counted once."""
    names: dict[tuple[str, int, int], set[str]] = {}
    for site in sites:
        names.setdefault((site.kind, site.in_features, site.out_features), set()).add(site.name)
    return {key: len(members) for key, members in names.items()}


_LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """The block index in a module path (as `variants._moe.layer_index`)."""
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None
