"""LoRA-GA (Wang et al.): LoRA initialised from the SVD of the full weight gradient (§II-D2).

Before `prepare` a layer is plain rsLoRA (A random, B = 0, identity at init). `prepare`
estimates each adapted weight's gradient G over `steps` batches, sets A and B from its singular
vectors (Eqs. (100)-(102)) and subtracts s B0 A0 from the frozen weight, so the prepared model
computes the same function as the pretrained one (up to rounding) while its first optimizer
step moves W along G's best rank-2r approximation (Eqs. (99), (103)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.lora_ga import VARIANT, LoRAGAParams
from lorabench.variants._gradients import (
    estimate_weight_gradients,
    factors_state,
    layer_factors,
    signed_svd,
    take_rows,
)
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    PrepareContext,
    VariantSpec,
    register,
)
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import peft_lora_config
from lorabench.variants.rslora import RsLoRALinear


def lora_ga_factors(grad: Tensor, rank: int, gamma: float) -> tuple[Tensor, Tensor]:
    """A (rank, in) and B (out, rank) in fp32 from the gradient G (out, in) of one layer.

    In our (out, in) convention G = U S V^T: A takes the top-r right singular vectors and B the
    left ones r+1..2r (Eq. (101), LoRA-GA's "ArB2r"; the paper's xW convention swaps U and V),
    both scaled by out^(1/4) / sqrt(gamma) (Eq. (102), LoRA-GA's "stable" scale).
    """
    u, _, vh = signed_svd(grad)
    scale = grad.shape[0] ** 0.25 / math.sqrt(gamma)
    lora_a = take_rows(vh, rank)
    lora_b = take_rows(u.T[rank:], rank).T
    return lora_a * scale, lora_b * scale


class LoRAGALinear(RsLoRALinear):
    """rsLoRA layer (s = alpha / sqrt(r), Eq. (103)) whose prepare rewrites the frozen weight.

    `init_lora_A` / `init_lora_B` keep the prepared factors (zeros before prepare): the frozen
    weight is W - s B0 A0, so a PEFT export on the original W needs them (rank-2r LoRA).
    """

    variant_name = "lora-ga"
    params_cls = LoRAGAParams
    modifies_base = True
    # Fresh layers are plain LoRA (B = 0); prepare keeps the function (W - s B0 A0 + s B0 A0).
    zero_init = True

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.register_buffer("init_lora_A", torch.zeros_like(self.lora_A))
        self.register_buffer("init_lora_B", torch.zeros_like(self.lora_B))

    @torch.no_grad()
    def apply_initial_factors(self, lora_a: Tensor, lora_b: Tensor) -> None:
        """Set A0, B0 and fold -s B0 A0 into the frozen weight. Call once, on the pretrained W."""
        if self.merged:
            raise ValueError("lora-ga: unmerge the adapter before initialising it")
        self.lora_A.copy_(lora_a)
        self.lora_B.copy_(lora_b)
        self.init_lora_A.copy_(self.lora_A)
        self.init_lora_B.copy_(self.lora_B)
        weight = self.base.weight
        # The offset from the factors as stored (after any dtype cast), in fp32, so W + s B A
        # starts as close to the pretrained W as the weight's dtype allows.
        offset = self.scaling * (self.lora_B.float() @ self.lora_A.float())
        weight.copy_((weight.float() - offset).to(weight.dtype))


def prepare_lora_ga(ctx: PrepareContext) -> dict[str, Any]:
    grads = estimate_weight_gradients(ctx, ctx.params.steps)  # Eq. (100)'s nabla W~_0
    for name, layer in adapter_layers(ctx.model):
        lora_a, lora_b = lora_ga_factors(grads.pop(name), layer.rank, ctx.params.gamma)
        layer.apply_initial_factors(lora_a, lora_b)
    # The factors suffice: restore recomputes the same offset from the same pretrained W.
    return factors_state(ctx.model)


def restore_lora_ga(model: nn.Module, state: dict[str, Any], params: Any) -> None:
    for layer, lora_a, lora_b in layer_factors(model, state, "lora-ga"):
        layer.apply_initial_factors(lora_a, lora_b)


def peft_lora_ga_config(settings: PeftSettings) -> Any:
    # A plain rank-2r rsLoRA holding [A; A0] and [B, -B0] (PEFT's own LoRA-GA conversion):
    # alpha * sqrt(2) keeps alpha / sqrt(r) at rank 2r.
    doubled = dataclasses.replace(settings, rank=2 * settings.rank, alpha=settings.alpha * 2**0.5)
    return peft_lora_config(doubled, use_rslora=True)


@torch.no_grad()
def copy_lora_ga_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # On the pretrained W: W + s (B A - B0 A0) == (W - s B0 A0) + s B A, our prepared layer.
    theirs.lora_A["default"].weight.copy_(torch.cat([ours.lora_A, ours.init_lora_A], dim=0))
    theirs.lora_B["default"].weight.copy_(torch.cat([ours.lora_B, -ours.init_lora_B], dim=1))


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRAGALinear,
        peft_export=PeftExport(make_config=peft_lora_ga_config, copy_weights=copy_lora_ga_to_peft),
        prepare=prepare_lora_ga,
        restore=restore_lora_ga,
    )
)
