"""GOAT (Fan et al.): SVD-structured LoRA experts with a theoretically derived scaling
(paper §II-E3, Eq. (124)-(126), (132)).

Structure: `experts` experts splitting the job's rank (paper: 8 experts of rank 1), a
bias-free router (nn.Linear default init) over the layer input, top-k routing with the top-k
softmax gates renormalised (paper: 2 activated experts per token), Eq. (125).

Initialisation (official GOAT-PEFT, init_type "goat"): W = U S V^T; with n experts and
k = min(out, in), expert i takes the r_i singular triplets starting at i * (k // n) (disjoint
segments spread over the whole spectrum), and Eq. (132)
    B_i = U_i (S_i / (s_i rho))^{1/2},   A_i = (S_i / (s_i rho))^{1/2} V_i^T,
so s_i B_i A_i = U_i S_i V_i^T / rho (rho = 10 shrinks the prior; rho = 1 is Eq. (132) as
printed). The frozen weight becomes the residual W - init_cof * sum_i s_i B_i A_i with
init_cof = 1/n by default (the official scripts: routing weights sum to one, so the expected
initial update of a uniform router is (1/n) sum_i s_i B_i A_i). The fresh model therefore
differs from the base by (sum_i w_i(x) - init_cof) s_i B_i A_i x: not zero (zero_init False),
and the base weight is rewritten (modifies_base True, so checkpoints carry it).

Scaling: s_i = sqrt(3 * eta * in_features / r_i) (GOAT's derived factor, eta = 1); it replaces
alpha / r, so alpha is unused. Load balancing: Switch-style Eq. (126) per layer, summed over
layers and weighted by aux_loss_coeff = 1e-3 (official GLUE script). For fewer input/output
features than experts the singular segments wrap around (experts then share directions).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.goat import VARIANT, GOATParams
from lorabench.variants._moe import (
    RoutedLoRALinear,
    RouterOutput,
    kaiming_uniform_,
    split_ranks,
    summed_layer_loss,
    switch_balance_loss,
)
from lorabench.variants.base import VariantSpec, register


def singular_indices(k: int, ranks: list[int]) -> list[list[int]]:
    """Singular-value indices of each expert: r_i consecutive ones from i * (k // n) (official
    GOAT), wrapping modulo k when the spectrum is shorter than the experts need."""
    n = len(ranks)
    segment = k // n
    picks = []
    for i, r in enumerate(ranks):
        start = i * segment if segment else (i * k) // n
        picks.append([(start + j) % k for j in range(r)])
    return picks


class GOATLinear(RoutedLoRALinear):
    """y = W_res x + sum_i w_i(x) s_i B_i A_i x with SVD-initialised experts (Eq. (132))."""

    variant_name = "goat"
    params_cls = GOATParams
    zero_init = False
    modifies_base = True

    def make_expert_ranks(self) -> list[int]:
        return split_ranks(self.rank, self.params.experts)

    @property
    def top_k(self) -> int:
        return min(self.params.top_k, self.n_experts)

    def expert_scalings(self) -> list[float]:
        # GOAT: s_i = sqrt(3 eta n_in / r_i).
        return [math.sqrt(3 * self.params.eta * self.in_features / r) for r in self.expert_ranks]

    @property
    def scaling(self) -> float:
        return self.expert_scalings()[0]

    @property
    def init_cof(self) -> float:
        cof = self.params.init_cof
        return 1.0 / self.n_experts if cof is None else float(cof)

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        """Eq. (132) from the current base weight, which becomes the residual. Calling it again
        decomposes that residual (as re-running PiSSA-style inits does)."""
        kaiming_uniform_(self.lora_router)
        weight = self.base.weight
        u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
        picks = singular_indices(s.shape[0], self.expert_ranks)
        offset = torch.zeros_like(weight, dtype=torch.float32)
        for i, (idx, scale) in enumerate(zip(picks, self.expert_scalings(), strict=True)):
            idx = torch.tensor(idx, device=weight.device)
            root = (s[idx] / (scale * self.params.rho)).sqrt()
            a, b = self.expert_factors(i)
            a.copy_(root[:, None] * vh[idx])
            b.copy_(u[:, idx] * root)
            offset += scale * (b.float() @ a.float())
        weight.copy_((weight.float() - self.init_cof * offset).to(weight.dtype))

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else GOATParams()
        experts = len(split_ranks(rank, params.experts))
        return rank * (in_features + out_features) + experts * in_features


def goat_layer_loss(layer: GOATLinear, stats: RouterOutput) -> Tensor:
    return switch_balance_loss(stats.probs, stats.mask)


def goat_extra_loss(model: nn.Module, params: GOATParams) -> Tensor | None:
    return summed_layer_loss(model, GOATLinear, params.aux_loss_coeff, goat_layer_loss)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=GOATLinear,
        extra_loss=goat_extra_loss,
    )
)
