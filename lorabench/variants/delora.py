"""DeLoRA (Bini et al.): normalised low-rank directions with a learnable strength (§II-C2).

Eq. (69) normalises every rank-one component b_i a_i^T to unit norm and scales the sum by
lambda ||W|| / r, so the update's norm is bounded by lambda ||W|| (Eq. (70)) whatever A and B
are: the directions (A, B) and the strength (lambda) are learnt separately.

Choices where the survey is silent, with their sources:

* ||W|| is PEFT's (and DeLoRA's code's): the L2 norm of each input column of the frozen weight,
  a vector w that scales the update's columns, Delta W = (lambda / r) sum_i b_i a_i^T / (|a_i|
  |b_i|) diag(w); the paper's scalar form bounds the same way since max_j w_j <= ||W||_2.
* Norms are clamped at 1e-4 before dividing, as in PEFT, so both agree even for vanishing rows.
* The paper's defaults draw A and B both kaiming-uniform (lambda = 8). Normalisation needs
  B != 0, so the update is not zero by itself; DeLoRA's code subtracts the initial update from
  the frozen weight. That residual would be lost by a PEFT export (PEFT adapters never change the
  base), so here a frozen copy (A0, B0) of the initial factors is kept and its normalised update
  is subtracted under the same lambda:
      Delta W = (lambda / r) [sum_i b_i a_i^T / (|a_i||b_i|) - sum_i b0_i a0_i^T / (|a0_i||b0_i|)]
                diag(w).
  It is zero at init, exactly; its first term is the paper's Eq. (69) update with its Eq. (70)
  bound, the whole is at most 2 lambda max_j w_j; and it is a rank-2r DeLoRA update with the
  strength 2 lambda, which is how PEFT's DeLoRA holds it. Unlike DeLoRA's code, lambda also
  scales the frozen term, so lambda has no gradient until the directions move.
* A0, B0 (so A, B at init) come from a generator seeded by the params' seed and the layer's name:
  a rebuilt model regenerates them, and only trainable weights need saving.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.delora import VARIANT, DeLoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    register,
)

# PEFT's DeLoRA clamps the component norms at this value before dividing by them.
NORM_EPS = 1e-4


class DeLoRALinear(AdapterLinear):
    """Eq. (69) with A: (rank, in), B: (out, rank), PEFT naming; see the module docstring."""

    variant_name = "delora"
    params_cls = DeLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        rank = self.rank
        self.delora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.delora_B = nn.Parameter(torch.empty(self.out_features, rank, **factory))
        self.delora_lambda = nn.Parameter(torch.empty(1, **factory))
        # Frozen, and rebuilt from the seed and the frozen weight: never saved.
        self.register_buffer("delora_A0", torch.empty_like(self.delora_A), persistent=False)
        self.register_buffer("delora_B0", torch.empty_like(self.delora_B), persistent=False)
        # ||W||: the L2 norm of each input column of the pretrained weight (PEFT's choice).
        w_norm = base.weight.detach().float().norm(dim=0).to(factory["dtype"])
        self.register_buffer("delora_w_norm", w_norm, persistent=False)
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (69): lambda / r (times the column norms of W, which vary per column).
        return float(self.delora_lambda.detach()) / self.rank

    def _generator(self) -> torch.Generator:
        # The CPU generator keeps 32 bits of its seed: hash seed and name together into them.
        seed = zlib.crc32(f"{self.params.seed}/{self.site.name}".encode())
        return torch.Generator(device="cpu").manual_seed(seed)

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # The paper's defaults: A and B both kaiming-uniform (a = sqrt(5), bound 1/sqrt(fan_in))
        # and lambda = 8; the frozen copies make the initial update exactly zero.
        gen = self._generator()
        a = torch.empty(self.delora_A.shape).uniform_(-1.0, 1.0, generator=gen)
        b = torch.empty(self.delora_B.shape).uniform_(-1.0, 1.0, generator=gen)
        self.delora_A.copy_(a / math.sqrt(self.in_features))
        self.delora_B.copy_(b / math.sqrt(self.rank))
        self.delora_A0.copy_(self.delora_A)
        self.delora_B0.copy_(self.delora_B)
        self.delora_lambda.fill_(self.params.delora_lambda)

    def component_scales(self, a: Tensor, b: Tensor) -> Tensor:
        """Eq. (69)'s diagonal D: lambda / (r |a_i| |b_i|) per rank-one component, shape (r,)."""
        a_norm = a.norm(dim=1).clamp_min(NORM_EPS)
        b_norm = b.norm(dim=0).clamp_min(NORM_EPS)
        return (self.delora_lambda / self.rank) / (a_norm * b_norm)

    def normalized_update(self, a: Tensor, b: Tensor) -> Tensor:
        """Eq. (69) for factors a (r, in), b (out, r): (lambda/r) sum_i b_i a_i^T/(..) diag(w)."""
        return ((b * self.component_scales(a, b)) @ a) * self.delora_w_norm

    def delta_weight(self) -> Tensor:
        live = self.normalized_update(self.delora_A, self.delora_B)
        return live - self.normalized_update(self.delora_A0, self.delora_B0)

    def _normalized_forward(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        # Eq. (69) on activations: x diag(w) A^T D B^T, O(r (in + out)) per token.
        return F.linear(F.linear(x, a) * self.component_scales(a, b), b)

    def adapter_forward(self, x: Tensor) -> Tensor:
        x = x.to(self.delora_A.dtype) * self.delora_w_norm
        live = self._normalized_forward(x, self.delora_A, self.delora_B)
        # Same ops on bit-identical factors at init: the difference is exactly zero there.
        return live - self._normalized_forward(x, self.delora_A0, self.delora_B0)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank * (in_features + out_features) + 1


def peft_delora_config(settings: PeftSettings) -> Any:
    from peft import DeloraConfig

    # Rank 2r: our r live components plus the r frozen ones, under PEFT's one lambda per layer.
    # PEFT's "module_dropout" is dropout on the adapter input, like ours.
    return DeloraConfig(
        r=2 * settings.rank,
        delora_lambda=2 * settings.params.delora_lambda,
        module_dropout=settings.dropout,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_delora_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # PEFT: (lambda' / 2r) sum over 2r components; lambda' = 2 lambda gives our lambda / r, and
    # the frozen components enter with B0 negated (the normalisation keeps the sign).
    theirs.delora_A["default"].copy_(torch.cat([ours.delora_A, ours.delora_A0], dim=0))
    theirs.delora_B["default"].copy_(torch.cat([ours.delora_B, -ours.delora_B0], dim=1))
    theirs.delora_lambda["default"].copy_(2 * ours.delora_lambda)
    theirs.delora_w_norm["default"].copy_(ours.delora_w_norm)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=DeLoRALinear,
        peft_export=PeftExport(make_config=peft_delora_config, copy_weights=copy_delora_to_peft),
    )
)
