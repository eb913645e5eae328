"""LoRAMoE (Dou et al.): LoRA experts mixed by a token router, trained with a localized
balancing constraint (paper §II-E1, Eq. (124)-(125), (128)-(129)).

Structure: `experts` LoRA experts splitting the job's rank (paper: 8 experts of rank 1, total
rank 8), a bias-free softmax router over the layer input (official code: nn.Linear(in, E,
bias=False), kaiming-uniform), experts A kaiming-uniform and B zero (Eq. (88)), so the fresh
update is zero. Routing: the paper's variant-specific hyperparameters activate 2 experts per
token for LoRAMoE ("the number of activated experts for each token is set to 2"; LoRAFactory
implements it as a softmax over the top-2 logits); `top_k=0` (or >= experts) restores the
original LoRAMoE's dense softmax over all experts. Scaling: Eq. (124)'s gamma_r = alpha / r
with r the job's total rank (LoRAFactory; the original LoRAMoE code uses alpha / r_expert).

Localized balancing constraint (LBC), Eq. (128)-(129): the importance Q[m, n] is the sum over
sample m's tokens of the router's softmax probability of expert n (dense, as LoRAMoE routes);
Z = I o Q with I = 1 + delta for experts whose type matches the sample's and 1 - delta
otherwise; L_lbc = Var(Z) / Mean(Z)^2, Z's squared coefficient of variation as the official
code computes it (Eq. (129) prints sigma^2/mu; the official `cv_squared` divides by mu^2 (+1e-10),
which keeps the loss independent of sequence length). Experts split into two types, the first
half (world knowledge) and the second half (downstream tasks); every benchmark sample is
downstream-task data, so I = (1 - delta) on the first half and (1 + delta) on the second.
The total extra loss is beta * sum over adapted layers of L_lbc (the official model sums the
per-module losses over all layers). A 3-D input (batch, seq, in) has `batch` samples of `seq`
tokens; a 2-D input treats each row as a sample. Padding tokens count, as in the original.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.loramoe import VARIANT, LoRAMoEParams
from lorabench.variants._moe import (
    RoutedLoRALinear,
    RouterOutput,
    kaiming_uniform_,
    split_ranks,
    summed_layer_loss,
)
from lorabench.variants.base import VariantSpec, init_lora_factors, register


class LoRAMoELinear(RoutedLoRALinear):
    """y = W x + gamma_r * sum_i w_i(x) B_i A_i x (Eq. (124)), w = top-k softmax (Eq. (125))."""

    variant_name = "loramoe"
    params_cls = LoRAMoEParams

    def make_expert_ranks(self) -> list[int]:
        return split_ranks(self.rank, self.params.experts)

    @property
    def top_k(self) -> int:
        k = self.params.top_k
        return self.n_experts if k == 0 else min(k, self.n_experts)

    @property
    def scaling(self) -> float:
        # Eq. (124): gamma_r = alpha / r over the job's total rank.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        init_lora_factors(self.lora_A, self.lora_B)  # Eq. (88) per expert: B = 0
        kaiming_uniform_(self.lora_router)

    def type_coefficients(self) -> Tensor:
        """Eq. (128) for downstream-task samples: 1 - delta on the first (world-knowledge) half of
        the experts, 1 + delta on the second (task) half."""
        delta = self.params.lbc_delta
        coeff = torch.full((self.n_experts,), 1.0 + delta, device=self.lora_router.device)
        coeff[: self.n_experts // 2] = 1.0 - delta
        return coeff

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else LoRAMoEParams()
        experts = len(split_ranks(rank, params.experts))
        return rank * (in_features + out_features) + experts * in_features


def lbc_loss(layer: LoRAMoELinear, stats: RouterOutput) -> Tensor:
    """Eq. (129) (as cv^2, see the module docstring) for one layer's last forward."""
    probs = stats.probs
    experts = probs.shape[-1]
    # Q: (samples, E), each sample's summed gate probabilities.
    importance = probs.sum(dim=-2) if probs.dim() >= 3 else probs
    z = importance.reshape(-1, experts) * layer.type_coefficients().to(probs.device)
    if z.numel() < 2:
        return z.new_zeros(())
    return z.var() / (z.mean() ** 2 + 1e-10)


def loramoe_extra_loss(model: nn.Module, params: LoRAMoEParams) -> Tensor | None:
    return summed_layer_loss(model, LoRAMoELinear, params.lbc_weight, lbc_loss)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRAMoELinear,
        extra_loss=loramoe_extra_loss,
    )
)
