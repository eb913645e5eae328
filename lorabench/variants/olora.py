"""OLoRA (Büyükakyüz): orthonormal LoRA init from a QR decomposition of W, base replaced by the
residual (paper §II-D1, Eq. (95)); the same factors as PEFT's init_lora_weights="olora"."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.olora import VARIANT
from lorabench.variants.base import NoParams, PeftExport, PeftSettings, VariantSpec, register
from lorabench.variants.lora import copy_lora_to_peft, peft_lora_config
from lorabench.variants.pissa import ResidualLoRALinear


class OLoRALinear(ResidualLoRALinear):
    """Eq. (95): W = QR; B0 = Q[:, :r] (orthonormal columns), A0 = R[:r]; base = W - s * B0 A0.

    Like PEFT (and OLoRA's own code) the QR is of the (out, in) weight and the factors are not
    divided by s, so the residual removes s times the leading QR part. (Eq. (95), written for
    x W with W (in, out), puts Q on the input side; we follow the method's implementation.)"""

    variant_name = "olora"
    params_cls = NoParams

    def initial_factors(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        k = min(self.rank, *weight.shape)
        q, r = torch.linalg.qr(weight)  # reduced: Q (out, min), R (min, in)
        return r[:k], q[:, :k]


def peft_olora_config(settings: PeftSettings) -> Any:
    # PEFT re-derives the same residual from the fresh base (deterministic QR), on export and
    # again when the saved adapter is loaded, so only A and B need copying.
    return peft_lora_config(settings, init_lora_weights="olora")


@torch.no_grad()
def copy_olora_to_peft(ours: nn.Module, theirs: nn.Module) -> None:
    copy_lora_to_peft(ours, theirs)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=OLoRALinear,
        peft_export=PeftExport(make_config=peft_olora_config, copy_weights=copy_olora_to_peft),
    )
)
