"""LoRAN (Li, Song & Hou, Findings of EMNLP 2024; paper ref [74], §II-C2 alignment enhancing).

LoRAN passes the LoRA output through a fixed non-linear function, "Sinter", so the update is
no longer confined to the rank-r subspace. The benchmark paper lists LoRAN (§II-C2, Table II)
but gives no formula, so this module follows the benchmark authors' own implementation
(LoRAFactory / MyTransformers, ``common/lora_modules/loran.py``):

    Sinter(z) = amp * sin(freq * z) * z + z              (element-wise)
    x_dW      = s * Sinter(x A^T B^T),  s = alpha / r     (LoRA scaling, Eq. (1))

with its defaults ``loran_amp = 1.0`` and ``loran_freq = 1.0`` (LoRAFactory's training config).
The original paper's text was not retrievable here to cross-check those two numbers; they are
the values the benchmark itself ran with. A and B use LoRA's init (Eq. (88): Kaiming-uniform
A, B = 0); Sinter(0) = 0, so a fresh layer is the identity. The update depends on x
non-linearly, so there is no dense delta to merge (merges=False).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.loran import VARIANT, LoRANParams
from lorabench.variants.base import VariantSpec, register
from lorabench.variants.lora import LoRALinear


def sinter(z: Tensor, amp: float, freq: float) -> Tensor:
    """LoRAN's Sinter: the identity plus an amplitude-scaled, input-proportional sine ripple."""
    return _Sinter.apply(z, amp, freq)


class _Sinter(torch.autograd.Function):
    """z (1 + amp sin(f z)), keeping only z for backward (autograd would keep three tensors of
    the layer's output size) and recomputing the sine there. Functorch style, so packed
    training can vmap over it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, amp: float, freq: float) -> Tensor:
        return z + amp * torch.sin(freq * z) * z

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:  # noqa: ANN001
        z, amp, freq = inputs
        ctx.save_for_backward(z)
        ctx.amp, ctx.freq = amp, freq

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: ANN001
        (z,) = ctx.saved_tensors
        fz = ctx.freq * z
        # d/dz [z + a sin(f z) z] = 1 + a (sin(f z) + f z cos(f z))
        return grad * (1 + ctx.amp * (torch.sin(fz) + fz * torch.cos(fz))), None, None


class LoRANLinear(LoRALinear):
    """y = W x + s * Sinter(B A x); A: (rank, in), B: (out, rank) as in LoRA."""

    variant_name = "loran"
    params_cls = LoRANParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)

    def delta_weight(self) -> Tensor:
        raise NotImplementedError("LoRAN's Sinter makes the update input-dependent; no dense delta")

    def adapter_forward(self, x: Tensor) -> Tensor:
        x = x.to(self.lora_A.dtype)
        z = F.linear(F.linear(x, self.lora_A), self.lora_B)
        # Sinter on the low-rank output, then the LoRA scaling alpha / r (LoRAFactory's order).
        return sinter(z, self.params.amp, self.params.freq) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        # Sinter has no parameters: exactly LoRA's A and B.
        return rank * (in_features + out_features)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=LoRANLinear,
        peft_export=None,
    )
)
