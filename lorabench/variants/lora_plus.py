"""LoRA+ (Hayou et al., paper §II-C1, Eqs. (62)-(64)): plain LoRA with eta_B = ratio * eta_A.

The layer is LoRA's; only the optimizer groups differ, so PEFT exports it as a plain LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lorabench.variants.base import PeftExport, VariantSpec, register
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import LoRALinear, copy_lora_to_peft, peft_lora_config


@dataclass(frozen=True)
class LoRAPlusParams:
    """`lr_ratio`: eta_B / eta_A; the paper's setting is 16 (= 2^4, §II-C1 and its
    "Variant-specific hyperparameters")."""

    lr_ratio: float = 16.0

    def __post_init__(self) -> None:
        if not self.lr_ratio > 0:
            raise ValueError(f"lr_ratio must be positive, got {self.lr_ratio!r}")


class LoRAPlusLinear(LoRALinear):
    """W = W~ + (alpha / r) B A exactly as LoRA (Eq. (1)); the learning rates are set by
    `loraplus_param_groups`."""

    variant_name = "lora-plus"
    params_cls = LoRAPlusParams


def loraplus_param_groups(model: nn.Module, lr: float, params: LoRAPlusParams) -> list[dict]:
    """Groups: every B at lr * ratio; A and every other trainable parameter (the head) at lr.

    The paper puts "matrix A and other trainable parameters" at the base rate (§V, learning-rate
    sweep). PEFT's create_loraplus_optimizer and the official code also give 1-D parameters
    (e.g. the head's bias) the B rate; we follow the paper.
    """
    layers = [layer for _, layer in adapter_layers(model) if isinstance(layer, LoRAPlusLinear)]
    fast = {id(layer.lora_B): layer.lora_B for layer in layers if layer.lora_B.requires_grad}
    slow = [p for p in model.parameters() if p.requires_grad and id(p) not in fast]
    groups = [
        {"params": slow, "lr": lr},
        {"params": list(fast.values()), "lr": lr * params.lr_ratio},
    ]
    return [group for group in groups if group["params"]]


SPEC = register(
    VariantSpec(
        name="lora-plus",
        layer_cls=LoRAPlusLinear,
        params_cls=LoRAPlusParams,
        family="optimization",
        equations="Eq. (1), (62)-(64)",
        merges=True,
        summary="LoRA with the learning rate of B set to 16x that of A.",
        peft_export=PeftExport(make_config=peft_lora_config, copy_weights=copy_lora_to_peft),
        param_groups=loraplus_param_groups,
    )
)
