"""`aurora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.aurora."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class AuroraParams:
    """B-spline set-up of the learnable part of the ANL (LoRAFactory's defaults)."""

    grid_size: int = 5
    spline_order: int = 3
    grid_min: float = -1.0
    grid_max: float = 1.0
    spline_init_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {self.grid_size}")
        if self.spline_order < 0:
            raise ValueError(f"spline_order must be >= 0, got {self.spline_order}")
        if not self.grid_max > self.grid_min:
            raise ValueError("grid_max must be larger than grid_min")
        if self.spline_init_scale < 0:
            raise ValueError("spline_init_scale must be >= 0")

    @property
    def n_bases(self) -> int:
        return self.grid_size + self.spline_order


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # A, B, the r x r C of the tanh path and the (r, G + k) spline coefficients.
    params = params if params is not None else AuroraParams()
    return rank * (in_features + out_features) + rank * rank + rank * params.n_bases


def _kept(call: Call) -> Kept:
    # Per rank entry and token: the hidden, the tanh path's two outputs and the ANL output
    # (4), and the Cox-de Boor recursion's bases and left/right weights, about 3 (G + 2k)
    # values per order k (fewer at order 1); plus the summed bases per token.
    p = call.params
    per_rank = 4 + 3 * p.spline_order * (p.grid_size + 2 * p.spline_order)
    return Kept(compute=call.tokens * (call.rank * per_rank + p.n_bases))


VARIANT = VariantInfo(
    name="aurora",
    params_cls=AuroraParams,
    family="optimization",
    equations="Eq. (86), (87), (136), (137)",
    merges=False,
    summary="LoRA with an adaptive nonlinear layer tanh(tanh(h)C^T) + B-spline(h) V_s^T.",
    implementation="lorabench.variants.aurora",
    cost=AdapterCost(params=_params, activations=_kept),
)
