"""`randlora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.randlora."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class RandLoRAParams:
    """basis_rank: rank r of each random basis (paper: 32; 0 takes the layer's `rank`).
    max_basis_dim: U, the cap on the total rank n_b * r of one layer (paper: 1024).
    projection_prng_key: seed of the shared random bases (PEFT's `projection_prng_key`)."""

    basis_rank: int = 32
    max_basis_dim: int = 1024
    projection_prng_key: int = 0

    def __post_init__(self) -> None:
        if self.basis_rank < 0:
            raise ValueError(f"basis_rank must be >= 0 (0: use rank), got {self.basis_rank}")
        if self.max_basis_dim < 1:
            raise ValueError(f"max_basis_dim must be >= 1, got {self.max_basis_dim}")


def basis_rank(rank: int, params: RandLoRAParams) -> int:
    return params.basis_rank or rank


def count_bases(in_features: int, out_features: int, r: int, cap: int | None = None) -> int:
    """Eq. (31): n_b = ceil(min(d_min, U) / r) with d_min = min(in, out) of the layer."""
    dim = min(in_features, out_features)
    return math.ceil((dim if cap is None else min(dim, cap)) / r)


def dense_is_cheaper(tokens: int, in_features: int, out_features: int, rank: int) -> bool:
    """The implementation's training-time choice (`variants.randlora.dense_is_cheaper`, grad
    on) between the factored path and one matmul with W + dW."""
    n, i, o, p = tokens, in_features, out_features, rank
    factored = 2 * n * i * o + 2 * n * p * (i + o) + n * p * min(i, o)
    dense = 3 * n * i * o + 2 * p * i * o
    return dense < factored and i * o <= n * p


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    params = params or RandLoRAParams()
    r = basis_rank(rank, params)
    nb = count_bases(in_features, out_features, r, params.max_basis_dim)
    return nb * (r + min(in_features, out_features))  # lambda (r, n_b), gamma (n_b, d_min)


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # The shared A^S (r, largest d_min) and the pool of every B^S_k (largest d_max, r * n_full)
    # in the adapter dtype, as the implementation makes them.
    params = params or RandLoRAParams()
    r = basis_rank(rank, params)
    min_dim = max(min(s.in_features, s.out_features) for s in sites)
    max_dim = max(max(s.in_features, s.out_features) for s in sites)
    full = max(count_bases(s.in_features, s.out_features, r) for s in sites)
    return Kept(fp32=r * min_dim + max_dim * r * full)


def _rank(call: Call) -> int:
    r = basis_rank(call.rank, call.params)
    return r * count_bases(call.i, call.o, r, call.params.max_basis_dim)


def _dense(call: Call) -> bool:
    return call.dropout == 0 and dense_is_cheaper(call.tokens, call.i, call.o, _rank(call))


def _kept(call: Call) -> Kept:
    p, small, large = _rank(call), min(call.i, call.o), max(call.i, call.o)
    if _dense(call):
        # One matmul with W + dW: that weight, and the fp32 bases dW's gradient reads.
        return Kept(compute=call.o * call.i, fp32=large * p)
    # Factored: the scaled (p, d_min) factor and the (d_max, p) bases per call; the rank-p
    # hidden per token when the trainable factor comes second (in > out).
    hidden = call.tokens * p if call.i > call.o else 0
    return Kept(compute=p * (small + large) + hidden)


def _saves_input(call: Call) -> bool:
    # The input feeds the trainable factor first (in <= out) or the dense weight.
    return _dense(call) or call.i <= call.o


VARIANT = VariantInfo(
    name="randlora",
    params_cls=RandLoRAParams,
    family="rank",
    equations="Eq. (31)-(32)",
    merges=True,
    summary="Sum of n_b shared frozen random bases scaled by trainable diagonals; full rank.",
    peft=True,
    implementation="lorabench.variants.randlora",
    cost=AdapterCost(params=_params, frozen=_frozen, activations=_kept, saves_input=_saves_input),
)
