"""PiSSA (Meng et al.): LoRA factors from the principal singular triplets of W, base replaced by
the residual (paper §II-D1, Eqs. (90)-(92)). Also the shared residual-init base of MiLoRA and
OLoRA, which differ only in which rank-r part of W they move into the adapter."""

from __future__ import annotations

import torch
from torch import Tensor

from lorabench.catalog.variants.pissa import VARIANT, PiSSAParams
from lorabench.variants.base import VariantSpec, init_lora_factors, register
from lorabench.variants.lora import LoRALinear

# Seed of the random test matrix of the fast SVD: fixed, so a layer's init depends on its weight
# only (two injections of the same model get bit-identical residuals, whatever the global RNG).
FAST_SVD_SEED = 0


class ResidualLoRALinear(LoRALinear):
    """LoRA whose initial factors are cut out of the pretrained weight: W = W_res + s * B A.

    Subclasses implement `initial_factors(weight)`; the layer stores W_res = W - s * B0 A0 as its
    frozen base, so the wrapped layer starts as the same function (up to rounding). Ranks beyond
    what the decomposition provides (r > min(in, out)) keep LoRA's Eq. (88) init (B = 0)."""

    zero_init = False
    modifies_base = True

    def initial_factors(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """fp32 (k, in) A0 and (out, k) B0, k <= rank, with s * B0 @ A0 the part moved out of
        `weight` (fp32, (out, in)) into the adapter."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        if self.merged:
            raise ValueError(f"{self.variant_name}: unmerge before re-initialising the adapter")
        weight = self.base.weight
        # The function the layer computes now: W at construction; W_res + s * B A afterwards, so
        # a later reset re-cuts the factors without changing the layer's output.
        full = weight.detach().to(torch.float32, copy=True)
        if getattr(self, "_factors_ready", False):
            full += self.delta_weight().float()
        lora_a, lora_b = self.initial_factors(full)
        k = lora_a.shape[0]
        self.lora_A[:k].copy_(lora_a)
        self.lora_B[:, :k].copy_(lora_b)
        if k < self.rank:
            init_lora_factors(self.lora_A[k:], self.lora_B[:, k:])
        # Residual from the factors as stored (after any cast), so base + delta reproduces W.
        moved = self.lora_B[:, :k].float() @ self.lora_A[:k].float()
        weight.copy_((full - self.scaling * moved).to(weight.dtype))
        self._factors_ready = True


def fast_svd(weight: Tensor, k: int, niter: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k SVD by randomized subspace iteration (Halko et al., Alg. 4.4; the algorithm behind
    torch.svd_lowrank, which PEFT's "pissa_niter_<n>" calls with q = r), from a fixed seed."""
    gen = torch.Generator(device="cpu").manual_seed(FAST_SVD_SEED)
    test = torch.randn(weight.shape[1], k, generator=gen, dtype=weight.dtype)
    basis = torch.linalg.qr(weight @ test.to(weight.device)).Q
    for _ in range(niter):
        basis = torch.linalg.qr(weight.mT @ basis).Q
        basis = torch.linalg.qr(weight @ basis).Q
    u, s, vh = torch.linalg.svd(basis.mT @ weight, full_matrices=False)
    return basis @ u, s, vh


def split_singular(u: Tensor, s: Tensor, vh: Tensor, scaling: float) -> tuple[Tensor, Tensor]:
    """Eqs. (91)-(92): sqrt(S) on each side, A = sqrt(S/s) V^T and B = U sqrt(S/s), so that
    s * B A = U S V^T (PEFT divides S by the scaling the same way)."""
    if scaling <= 0:
        raise ValueError(f"SVD-initialised LoRA needs alpha > 0 (scaling {scaling:g})")
    root = (s / scaling).sqrt()
    return root[:, None] * vh, u * root[None, :]


class PiSSALinear(ResidualLoRALinear):
    """Eqs. (90)-(92): A0, B0 from the top-r singular triplets; base = W - s * B0 A0."""

    variant_name = "pissa"
    params_cls = PiSSAParams

    def initial_factors(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        k = min(self.rank, *weight.shape)
        if self.params.svd_iters == 0:
            u, s, vh = torch.linalg.svd(weight, full_matrices=False)
            u, s, vh = u[:, :k], s[:k], vh[:k]
        else:
            u, s, vh = fast_svd(weight, k, self.params.svd_iters)
        return split_singular(u, s, vh, self.scaling)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=PiSSALinear,
    )
)
