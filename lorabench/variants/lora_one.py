"""LoRA-One (Zhang et al.): B A starts as one scaled full-gradient step (§II-D2, Eqs. (104)-(106)).

Before `prepare` a layer is plain rsLoRA (A random, B = 0, identity at init). `prepare`
estimates each adapted weight's gradient G over `steps` batches and sets B A to the top-r SVD
of -G, normalised by its largest singular value and divided by gamma. The frozen weight is left
alone (LoRA-One needs no weight manipulation), so the prepared model starts one small
gradient-descent step away from the pretrained one: W + s B0 A0 = W - s/(gamma sigma_1) G_r.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.lora_one import VARIANT, LoRAOneParams
from lorabench.variants._gradients import (
    estimate_weight_gradients,
    factors_state,
    layer_factors,
    signed_svd,
    take_rows,
)
from lorabench.variants.base import PeftExport, PrepareContext, VariantSpec, register
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import copy_lora_to_peft, peft_lora_config
from lorabench.variants.rslora import RsLoRALinear


def lora_one_factors(grad: Tensor, rank: int, gamma: float) -> tuple[Tensor, Tensor] | None:
    """A (rank, in) and B (out, rank) in fp32 with B A = -G_r / (gamma sigma_1), or None when
    G is zero (nothing to align with: the layer keeps plain LoRA's init)."""
    u, s, vh = signed_svd(-grad)  # Eq. (104): SVD of the negative gradient
    if s.numel() == 0 or s[0] <= 0:
        return None
    # Eq. (104): S / sigma_1; Eqs. (105)-(106): sqrt of it on each side, 1/sqrt(gamma) each.
    root = (take_rows(s[:, None], rank).squeeze(1) / s[0]).sqrt() / math.sqrt(gamma)
    lora_a = take_rows(vh, rank) * root[:, None]
    lora_b = take_rows(u.T, rank).T * root
    return lora_a, lora_b


class LoRAOneLinear(RsLoRALinear):
    """rsLoRA layer (s = alpha / sqrt(r), as LoRA-One's runs use) with a gradient-SVD start."""

    variant_name = "lora-one"
    params_cls = LoRAOneParams
    # Fresh layers are plain LoRA (B = 0, identity); after prepare B0 A0 != 0 on purpose, and
    # tests/test_variant_lora_one.py checks that initial update explicitly.
    zero_init = True

    @torch.no_grad()
    def apply_initial_factors(self, lora_a: Tensor, lora_b: Tensor) -> None:
        if self.merged:
            raise ValueError("lora-one: unmerge the adapter before initialising it")
        self.lora_A.copy_(lora_a)
        self.lora_B.copy_(lora_b)


def prepare_lora_one(ctx: PrepareContext) -> dict[str, Any]:
    grads = estimate_weight_gradients(ctx, ctx.params.steps)
    for name, layer in adapter_layers(ctx.model):
        factors = lora_one_factors(grads.pop(name), layer.rank, ctx.params.gamma)
        if factors is not None:
            layer.apply_initial_factors(*factors)
    return factors_state(ctx.model)


def restore_lora_one(model: nn.Module, state: dict[str, Any], params: Any) -> None:
    for layer, lora_a, lora_b in layer_factors(model, state, "lora-one"):
        layer.apply_initial_factors(lora_a, lora_b)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRAOneLinear,
        # The prepared adapter is a plain rsLoRA on the unchanged W: PEFT's LoRA holds it.
        peft_export=PeftExport(
            make_config=lambda settings: peft_lora_config(settings, use_rslora=True),
            copy_weights=copy_lora_to_peft,
        ),
        prepare=prepare_lora_one,
        restore=restore_lora_one,
    )
)
