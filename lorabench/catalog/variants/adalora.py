"""`adalora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.adalora."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape
from lorabench.catalog.variant import VariantInfo

ORTH_REG_FORMS = ("mean_norm", "paper")


@dataclass(frozen=True)
class AdaLoRAParams:
    """Paper defaults (§V "Variant-specific hyperparameters"): t_i = 100, t_f = 900, initial
    rank 12, final average rank 8; beta1 = beta2 = 0.85 and delta_t = 1 from AdaLoRA / PEFT
    (the paper masks "at each training step"); orth_reg_weight = 0.1 from AdaLoRA."""

    init_rank: int = 12
    target_rank: int = 8
    t_init: int = 100
    t_final: int = 900
    delta_t: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.1
    orth_reg: str = "mean_norm"

    def __post_init__(self) -> None:
        if not 1 <= self.target_rank <= self.init_rank:
            raise ValueError(
                f"need 1 <= target_rank <= init_rank, got {self.target_rank}, {self.init_rank}"
            )
        if self.t_init < 0 or self.t_final < 0 or self.delta_t < 1:
            raise ValueError("t_init and t_final must be >= 0 and delta_t >= 1")
        if not (0 < self.beta1 < 1 and 0 < self.beta2 < 1):
            raise ValueError("beta1 and beta2 must lie in (0, 1)")
        if self.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight must be >= 0, got {self.orth_reg_weight!r}")
        if self.orth_reg not in ORTH_REG_FORMS:
            raise ValueError(f"orth_reg must be one of {ORTH_REG_FORMS}, got {self.orth_reg!r}")


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    # A (r0, in), E (r0, 1), B (out, r0) at the initial rank r0; the job's rank is not used.
    r0 = (params or AdaLoRAParams()).init_rank
    return r0 * (in_features + out_features + 1)


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # The rank mask and, per factor, smoothed sensitivity and uncertainty (Eqs. (41)-(42)).
    r0 = (params or AdaLoRAParams()).init_rank
    return Kept(fp32=sum(r0 + 2 * _params(s.in_features, s.out_features, r0, params)
                         for s in sites))  # fmt: skip


def _kept(call: Call) -> Kept:
    # The masked factor A * E (r0, in) per call and the rank-r0 hidden per token.
    r0 = call.params.init_rank
    return Kept(compute=call.tokens * r0 + r0 * call.i)


VARIANT = VariantInfo(
    name="adalora",
    params_cls=AdaLoRAParams,
    family="rank",
    equations="Eq. (35)-(44)",
    merges=True,
    summary="SVD-form adapter; importance scores mask singular values down to a rank budget.",
    peft=True,
    implementation="lorabench.variants.adalora",
    cost=AdapterCost(params=_params, frozen=_frozen, activations=_kept),
)
