"""Aurora (Dong et al. 2025; paper ref [72], §II-C2): LoRA with an adaptive nonlinear layer.

Eqs. (86)-(87) and the §III-B forward (136)-(137):

    h      = dropout(x) A^T                                   (rank r, Eq. (136))
    ANL(h) = tanh(tanh(h) C^T) + sum_j S(h_j) V_s^T           (Eq. (86))
    x_dW   = s * ANL(h) B^T,  s = alpha / r                   (Eqs. (87), (137))

The paper's Eq. (86) prints tanh(tanh(M)) and names the r x r matrix C and the spline weights
V_s without placing them; where they sit, the B-spline set-up and the inits follow the
benchmark authors' own implementation (LoRAFactory / MyTransformers,
``common/lora_modules/aurora.py``):

* C (r x r, "weight_ab_mixer") sits between the two tanh's; Xavier-normal init.
* S(h_j) is the vector of the G + k B-spline basis functions (order k, Cox-de Boor) on a uniform
  grid of G intervals over [grid_min, grid_max], extended by k knots on each side; the bases are
  summed over the r channels and mixed by V_s (r x (G + k)), init U(-0.1, 0.1).
  Defaults: G = 5, k = 3, grid [-1, 1], spline init scale 0.1. (Table II's AURORA count,
  21.00M vs LoRA 20.97M at r = 8, matches r^2 + r (G + k) extra parameters per layer.)
* A: Kaiming-uniform, B = 0 (Eq. (88)), so the initial update is exactly zero.

The update depends on x non-linearly: no dense delta (merges=False), and the forward never forms
an out x in matrix, only r-wide activations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.aurora import VARIANT, AuroraParams
from lorabench.variants.base import (
    AdapterLinear,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)


def spline_knots(params: AuroraParams) -> Tensor:
    """Uniform knots: G intervals over [grid_min, grid_max] plus k extra knots on each side."""
    step = (params.grid_max - params.grid_min) / params.grid_size
    k = params.spline_order
    return torch.arange(-k, params.grid_size + k + 1, dtype=torch.float64) * step + params.grid_min


def bspline_bases(h: Tensor, knots: Tensor, order: int) -> Tensor:
    """Cox-de Boor recursion: (..., n) -> (..., n, len(knots) - 1 - order) basis values."""
    h = h.unsqueeze(-1)
    # Order 0: indicator of the half-open knot interval [t_i, t_{i+1}).
    bases = ((h >= knots[:-1]) & (h < knots[1:])).to(h.dtype)
    for k in range(1, order + 1):
        left = (h - knots[: -(k + 1)]) / (knots[k:-1] - knots[: -(k + 1)])
        right = (knots[k + 1 :] - h) / (knots[k + 1 :] - knots[1:-k])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


class AuroraLinear(AdapterLinear):
    """y = W x + s * ANL(A x) B^T with ANL of Eq. (86)."""

    variant_name = "aurora"
    params_cls = AuroraParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        rank = self.rank
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, rank, **factory))
        # Eq. (86): the intermediate r x r matrix C and the spline weights V_s.
        self.aurora_C = nn.Parameter(torch.empty(rank, rank, **factory))
        self.aurora_spline = nn.Parameter(torch.empty(rank, self.params.n_bases, **factory))
        # Fixed knots: derived from params, so not saved with the model.
        knots = spline_knots(self.params).to(device=base.weight.device, dtype=torch.float32)
        self.register_buffer("spline_knots", knots, persistent=False)
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (87): alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # Eq. (88): LoRA's A (PEFT's kaiming_uniform_(a=sqrt(5)) bound) and B = 0.
        init_lora_factors(self.lora_A, self.lora_B)
        nn.init.xavier_normal_(self.aurora_C)
        scale = self.params.spline_init_scale
        self.aurora_spline.uniform_(-scale, scale)

    def delta_weight(self) -> Tensor:
        raise NotImplementedError("Aurora's ANL makes the update input-dependent; no dense delta")

    def anl(self, h: Tensor) -> Tensor:
        """Eq. (86): fixed tanh path through C plus the learnable B-spline path."""
        fixed = torch.tanh(F.linear(torch.tanh(h), self.aurora_C))
        knots = self.spline_knots.to(h.dtype)
        bases = bspline_bases(h, knots, self.params.spline_order)  # (..., r, G + k)
        learnable = F.linear(bases.sum(dim=-2), self.aurora_spline)
        return fixed + learnable

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eqs. (136)-(137): A, the ANL on r channels, then B and the scaling.
        x = x.to(self.lora_A.dtype)
        return F.linear(self.anl(F.linear(x, self.lora_A)), self.lora_B) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else AuroraParams()
        return rank * (in_features + out_features) + rank * rank + rank * params.n_bases


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=AuroraLinear,
        peft_export=None,
    )
)
