"""DoRA (Liu et al.): weight-decomposed LoRA, magnitude times direction (paper §II-C2)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.dora import VARIANT, DoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    VariantSpec,
    adapter_factory,
    init_lora_factors,
    register,
)
from lorabench.variants.lora import copy_lora_to_peft, peft_lora_config


class _Combine(torch.autograd.Function):
    """out + (g - 1) * wx + g * update, keeping one activation (wx + update) for backward
    instead of the two autograd would keep: DoRA's extra memory is what Table II blames.
    Written in the functorch style (setup_context) so packed training can vmap over it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(out: Tensor, wx: Tensor, update: Tensor, scale: Tensor) -> Tensor:
        return out + (scale - 1.0) * wx + scale * update

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, ...], output: Tensor) -> None:  # noqa: ANN001
        _, wx, update, scale = inputs
        ctx.save_for_backward(wx + update, scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # noqa: ANN001
        total, scale = ctx.saved_tensors
        grad_scale = (grad * total).reshape(-1, grad.shape[-1]).sum(0)
        return grad, grad * (scale - 1.0), grad * scale, grad_scale


class DoRALinear(AdapterLinear):
    """W' = m * (W + s B A) / ||W + s B A||_row with A: (rank, in), B: (out, rank), m: (out,)."""

    variant_name = "dora"
    params_cls = DoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, self.rank, **factory))
        self.lora_magnitude = nn.Parameter(torch.empty(self.out_features, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (68): gamma_r = alpha / r.
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # LoRA's init (Eq. (88)): kaiming-uniform A, zero B, as in DoRA's and PEFT's code.
        init_lora_factors(self.lora_A, self.lora_B)
        # Eq. (68): m starts at the row norm of W (the same function the forward divides by, so
        # m / norm is exactly 1 and the fresh layer is exactly the base layer).
        self.lora_magnitude.copy_(self.column_norm())

    @torch.no_grad()
    def column_norm(self) -> Tensor:
        """||W + s B A|| per output row (the paper's "input dimension"), detached (DoRA §4.3).

        Expanded as ||W_i||^2 + 2 s <W_i, (B A)_i> + s^2 B_i (A A^T) B_i^T, so only (out, r) and
        (r, r) products are formed, never the dense (out, in) update. Autocast is off so the
        norm has the precision the magnitude was initialised with.
        """
        weight, a, b = self.base.weight, self.lora_A, self.lora_B
        s = self.scaling
        # At least fp32 (bf16/fp16 lose the norm's precision), never less than the weight: a
        # float64 layer keeps float64 (vector_norm refuses a narrowing dtype).
        acc = torch.promote_types(weight.dtype, torch.float32)
        with torch.autocast(weight.device.type, enabled=False):
            a = a.to(weight.dtype)
            b = b.to(weight.dtype)
            w_a = F.linear(weight, a).to(acc)  # (out, r) = W A^T
            gram = a.to(acc) @ a.to(acc).T  # (r, r)
            b_acc = b.to(acc)
            squared = torch.linalg.vector_norm(weight, dim=1, dtype=acc).square()
            cross = 2.0 * s * (b_acc * w_a).sum(1)
            squared = squared + cross + s * s * ((b_acc @ gram) * b_acc).sum(1)
            norm = squared.clamp_min(0.0).sqrt()
        # Round to the parameter dtype first so a fresh bf16 layer also has m / norm == 1.
        # A zero row (W_i + s (B A)_i = 0) would give 0 / 0: clamp so the row stays zero instead.
        norm = norm.to(self.lora_magnitude.dtype)
        return norm.clamp_min(torch.finfo(norm.dtype).tiny)

    def magnitude_scale(self) -> Tensor:
        """m / ||W + s B A||: the per-row factor of Eq. (68); gradient reaches m only."""
        return self.lora_magnitude / self.column_norm()

    def delta_weight(self) -> Tensor:
        # Eq. (68): W' - W = (g - 1) W + g s B A with g = m / ||W + s B A||.
        scale = self.magnitude_scale().unsqueeze(1)
        weight = self.base.weight.to(scale.dtype)
        return (scale - 1.0) * weight + scale * (self.lora_B @ self.lora_A) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # The low-rank direction update s B A x in two thin matmuls (Eq. (134)).
        x = x.to(self.lora_A.dtype)
        return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def adapted_forward(self, x: Tensor) -> Tensor:
        # Eq. (68) applied to x without a dense update (cf. Eq. (135)), with dropout where PEFT
        # and the official DoRA code put it, on both adapter terms (so training matches them):
        # base(x) + (g - 1) * W x' + g * s B A x',  x' = dropout(x); without dropout this is
        # g * (W x + s B A x) + b. Written as a correction to base(x) so a fresh layer
        # (g == 1, B == 0) returns it exactly.
        # Under checkpoint_adapter the whole layer is recomputed: the base output feeds the
        # magnitude gradient, so keeping it would keep DoRA's extra activations.
        return self.run_adapter(self._forward, x)

    def _forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        dropped = self.dropout(x)
        if self.dropout.training and not isinstance(self.dropout, nn.Identity):
            # The (g - 1) W x' term needs W times the dropped input: one more matmul, as in PEFT.
            wx = F.linear(dropped, self.base.weight).to(out.dtype)
        else:
            bias = self.base.bias
            wx = out if bias is None else out - bias.to(out.dtype)
        update = self.adapter_forward(dropped).to(out.dtype)
        return _Combine.apply(out, wx, update, self.magnitude_scale().to(out.dtype))

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        # LoRA's A and B plus the magnitude vector m (one entry per output row).
        return rank * (in_features + out_features) + out_features


@torch.no_grad()
def copy_dora_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # Same A, B, scaling alpha/r and row-norm convention: a straight copy, plus m.
    copy_lora_to_peft(ours, theirs)
    theirs.lora_magnitude_vector["default"].weight.copy_(ours.lora_magnitude)


def peft_dora_config(settings: PeftSettings) -> Any:
    return peft_lora_config(settings, use_dora=True)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=DoRALinear,
        peft_export=PeftExport(make_config=peft_dora_config, copy_weights=copy_dora_to_peft),
    )
)
