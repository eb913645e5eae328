"""LoRA+ (Hayou et al., paper §II-C1, Eqs. (62)-(64)): plain LoRA with eta_B = ratio * eta_A.

The layer is LoRA's; only the optimizer groups differ, so PEFT exports it as a plain LoRA.

Learning rates follow PEFT's `create_loraplus_optimizer` (and the official LoRA+ code), not the
paper's "A and other trainable parameters at the base rate": every B and every trainable 1-D
parameter (a new head's bias, a LayerNorm) gets lr * ratio; A and other matrices (the head's
weight) get lr. Reason: the benchmark is checked for equivalence with PEFT, and a LoRA+ run must
train as PEFT's does. PEFT's separate embedding rate never applies: we wrap only nn.Linear.
"""

from __future__ import annotations

from torch import nn

from lorabench.catalog.variants.lora_plus import VARIANT, LoRAPlusParams
from lorabench.variants.base import PeftExport, VariantSpec, register
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import LoRALinear, copy_lora_to_peft, peft_lora_config


class LoRAPlusLinear(LoRALinear):
    """W = W~ + (alpha / r) B A exactly as LoRA (Eq. (1)); the learning rates are set by
    `loraplus_param_groups`."""

    variant_name = "lora-plus"
    params_cls = LoRAPlusParams


def loraplus_param_groups(model: nn.Module, lr: float, params: LoRAPlusParams) -> list[dict]:
    """Groups: A and other trainable matrices at lr; every B and 1-D parameter at lr * ratio.

    Eq. (64)'s eta_B / eta_A = ratio for B; 1-D parameters join B as in PEFT (module docstring).
    The base-rate group comes first: the trainer logs its lr.
    """
    layers = [layer for _, layer in adapter_layers(model) if isinstance(layer, LoRAPlusLinear)]
    # B in layer order first, so runs without trainable 1-D parameters keep their old groups
    # (and their checkpoints' optimizer state lines up on resume).
    fast = {id(layer.lora_B): layer.lora_B for layer in layers if layer.lora_B.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    fast.update((id(p), p) for p in trainable if p.ndim == 1)
    slow = [p for p in trainable if id(p) not in fast]
    groups = [
        {"params": slow, "lr": lr},
        {"params": list(fast.values()), "lr": lr * params.lr_ratio},
    ]
    return [group for group in groups if group["params"]]


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRAPlusLinear,
        peft_export=PeftExport(make_config=peft_lora_config, copy_weights=copy_lora_to_peft),
        param_groups=loraplus_param_groups,
    )
)
