"""rsLoRA (Kalajdzievski): rank-stabilised scaling, otherwise plain LoRA (paper §II-C1)."""

from __future__ import annotations

import math

from lorabench.catalog.variants.rslora import VARIANT
from lorabench.variants.base import PeftExport, VariantSpec, register
from lorabench.variants.lora import LoRALinear, copy_lora_to_peft, peft_lora_config


class RsLoRALinear(LoRALinear):
    variant_name = "rslora"

    @property
    def scaling(self) -> float:
        # Eq. (61): alpha / sqrt(r) keeps the update scale rank-independent, so large r learns.
        return self.alpha / math.sqrt(self.rank)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=RsLoRALinear,
        peft_export=PeftExport(
            make_config=lambda settings: peft_lora_config(settings, use_rslora=True),
            copy_weights=copy_lora_to_peft,
        ),
    )
)
