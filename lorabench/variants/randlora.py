"""RandLoRA (Albert et al.): full-rank updates from shared frozen random bases (§II-B2).

One layer with d_min = min(in, out) and basis rank r uses n_b = ceil(min(d_min, U) / r) bases
(Eq. (31)) and computes, in PyTorch orientation for in <= out,

    dW = 2 / sqrt(n_b) * sum_k sum_j lambda[j, k] * B_k[:, j] (A[j, :] * gamma[k, :])   (Eq. (32))

with A (r, d_min) shared by every basis and layer (A^S), B_k (d_max, r) the k-th shared random
basis (B^{S_k}), lambda (r, n_b) the diagonals of Lambda^k and gamma (n_b, d_min) the diagonals of
Gamma^k. When in > out the roles swap (A acts on the output side), as in the paper and PEFT.

Column j of basis k is column j * n_full + k of one shared pool, n_full = ceil(d_min / r): that
is PEFT's pairing (it flattens (rank, basis) on one side and (basis, rank) on the other), so PEFT
export is a plain copy, and capping n_b by U keeps a subset of PEFT's bases (the rest get
lambda = 0), so capped layers export too.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from lorabench.catalog.variants.randlora import VARIANT, RandLoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    SharedParameters,
    Site,
    VariantSpec,
    adapter_factory,
    register,
)


def resolve_basis_rank(rank: int, params: RandLoRAParams) -> int:
    return params.basis_rank or rank


def count_bases(in_features: int, out_features: int, r: int, cap: int | None = None) -> int:
    """Eq. (31): n_b = ceil(min(d_min, U) / r) with d_min = min(in, out) of the layer."""
    dim = min(in_features, out_features)
    return math.ceil((dim if cap is None else min(dim, cap)) / r)


def dense_is_cheaper(
    tokens: int, in_features: int, out_features: int, rank: int, grad: bool
) -> bool:
    """Multiply-adds of one call with a rank-`rank` (r * n_b) update: factored (base + two thin
    matmuls) vs dense (form dW, then one matmul with W + dW). With U capping the rank well below
    min(in, out) (the paper's Llama setting) the factored path wins; uncapped full-rank updates
    over more tokens than max(in, out) are cheaper dense. In training, dense must also save no
    more for backward (one out x in weight instead of the tokens x rank hidden)."""
    n, i, o, p = tokens, in_features, out_features, rank
    if grad:  # backward: grads of x, of the hidden (or of W + dW) and of the scaled factor
        factored = 2 * n * i * o + 2 * n * p * (i + o) + n * p * min(i, o)
        dense = 3 * n * i * o + 2 * p * i * o
        return dense < factored and i * o <= n * p
    return p * i * o < n * p * (i + o)


class _ScaledBasis(torch.autograd.Function):
    """(r, n_b, d) tensor lambda[j, k] * A[j, i] * gamma[k, i], saving only its small inputs
    for backward (autograd would keep an extra (r * n_b, d) intermediate per layer)."""

    generate_vmap_rule = True  # functorch style, so packed training can vmap over it

    @staticmethod
    def forward(basis: Tensor, lam: Tensor, gamma: Tensor) -> Tensor:
        return lam[:, :, None] * basis[:, None, :] * gamma[None, :, :]

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:  # noqa: ANN001
        ctx.save_for_backward(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor | None, Tensor | None]:
        basis, lam, gamma = ctx.saved_tensors
        weighted = grad * basis[:, None, :].to(grad.dtype)
        grad_lam = grad_gamma = None
        if ctx.needs_input_grad[1]:
            grad_lam = torch.einsum("jki,ki->jk", weighted, gamma.to(grad.dtype)).to(lam.dtype)
        if ctx.needs_input_grad[2]:
            grad_gamma = torch.einsum("jki,jk->ki", weighted, lam.to(grad.dtype)).to(gamma.dtype)
        return None, grad_lam, grad_gamma


class RandLoRAShared(SharedParameters):
    """A^S (r, max d_min) and the pool of all B^{S_k} (max d_max, r * max n_full), frozen."""

    def __init__(self, r: int, min_dim: int, max_dim: int, columns: int, seed: int, device, dtype):
        super().__init__()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # Unit-variance uniform entries: PEFT/official draw Kaiming uniform and divide by the std.
        bound = math.sqrt(3.0)
        randlora_A = torch.empty(r, min_dim).uniform_(-bound, bound, generator=gen)
        randlora_B = torch.empty(max_dim, columns).uniform_(-bound, bound, generator=gen)
        self.register_buffer("randlora_A", randlora_A.to(device=device, dtype=dtype))
        self.register_buffer("randlora_B", randlora_B.to(device=device, dtype=dtype))


class RandLoRALinear(AdapterLinear):
    """Eq. (31)-(32): per layer only lambda (r, n_b) and gamma (n_b, d_min) are trained."""

    variant_name = "randlora"
    params_cls = RandLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.basis_rank = resolve_basis_rank(self.rank, self.params)
        self.min_dim = min(self.in_features, self.out_features)
        self.max_dim = max(self.in_features, self.out_features)
        self.num_bases = count_bases(
            self.in_features, self.out_features, self.basis_rank, self.params.max_basis_dim
        )
        # Bases the layer would have without the cap U: the stride of the pool pairing.
        self.full_bases = count_bases(self.in_features, self.out_features, self.basis_rank)
        factory = adapter_factory(base)
        self.randlora_lambda = nn.Parameter(torch.empty(self.basis_rank, self.num_bases, **factory))
        self.randlora_gamma = nn.Parameter(torch.empty(self.num_bases, self.min_dim, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (32): 2 / sqrt(n_b); alpha plays no part in RandLoRA's update.
        return 2.0 / math.sqrt(self.num_bases)

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # PEFT's init: lambda = 0 gives a zero initial update; gamma = 1 / max(gamma.shape).
        self.randlora_lambda.zero_()
        self.randlora_gamma.fill_(1.0 / max(self.num_bases, self.min_dim))

    def _factors(self) -> tuple[Tensor, Tensor]:
        """Scaled small-side factor (r * n_b, d_min) and large-side bases (d_max, r * n_b),
        both with column/row index j * n_b + k; dW = bases @ scaled (or its transpose)."""
        shared = self.shared
        r, nb = self.basis_rank, self.num_bases
        # Eq. (32)'s 2 / sqrt(n_b) folded into lambda: r * n_b multiplies instead of out per token.
        lam = self.randlora_lambda * self.scaling
        a = shared.randlora_A[:r, : self.min_dim].to(lam.dtype)
        scaled = _ScaledBasis.apply(a, lam, self.randlora_gamma).flatten(0, 1)
        pool = shared.randlora_B[: self.max_dim, : r * self.full_bases].to(lam.dtype)
        # Basis k, column j -> pool column j * n_full + k; a copy only when U drops bases.
        bases = pool.unflatten(1, (r, self.full_bases))[:, :, :nb].flatten(1)
        return scaled, bases

    def delta_weight(self) -> Tensor:
        scaled, bases = self._factors()
        delta = bases @ scaled  # (d_max, d_min)
        return delta.T if self.in_features > self.out_features else delta

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eq. (32) as one rank-(r * n_b) product, all bases at once: two thin matmuls,
        # O(r * n_b * (in + out)) per token, never the dense (out, in) update. adapted_forward
        # switches to the dense update only where that costs fewer multiply-adds.
        scaled, bases = self._factors()
        x = x.to(scaled.dtype)
        if self.in_features <= self.out_features:
            return F.linear(F.linear(x, scaled), bases)
        return F.linear(F.linear(x, bases.T), scaled.T)

    def dense_is_cheaper(self, tokens: int, grad: bool) -> bool:
        p = self.basis_rank * self.num_bases
        return dense_is_cheaper(tokens, self.in_features, self.out_features, p, grad)

    def adapted_forward(self, x: Tensor) -> Tensor:
        plain = isinstance(self.dropout, nn.Identity) or not self.training
        tokens = x.numel() // max(self.in_features, 1)
        if (
            plain
            and not self.checkpoint_adapter
            and self.dense_is_cheaper(tokens, torch.is_grad_enabled())
        ):
            # Without dropout the adapter sees the base input: ONE matmul with W + dW.
            weight = self.base.weight
            return F.linear(x, weight + self.delta_weight().to(weight.dtype), self.base.bias)
        return super().adapted_forward(x)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params or RandLoRAParams()
        r = resolve_basis_rank(rank, params)
        nb = count_bases(in_features, out_features, r, params.max_basis_dim)
        return nb * (r + min(in_features, out_features))

    @classmethod
    def make_shared(
        cls,
        sites: list[Site],
        *,
        rank: int,
        alpha: float,
        params: Any,
        device: torch.device,
        dtype: torch.dtype,
    ) -> nn.Module:
        r = resolve_basis_rank(rank, params)
        min_dim = max(min(s.in_features, s.out_features) for s in sites)
        max_dim = max(max(s.in_features, s.out_features) for s in sites)
        full = max(count_bases(s.in_features, s.out_features, r) for s in sites)
        seed = params.projection_prng_key
        return RandLoRAShared(r, min_dim, max_dim, r * full, seed, device, dtype)

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        return 0  # the shared bases are frozen buffers


def peft_randlora_config(settings: PeftSettings) -> Any:
    from peft import RandLoraConfig

    r = resolve_basis_rank(settings.rank, settings.params)
    return RandLoraConfig(
        r=r,
        # PEFT scales by randlora_alpha / r: make it 1 and fold 2 / sqrt(n_b) into lambda.
        randlora_alpha=r,
        target_modules=settings.targets,
        randlora_dropout=settings.dropout,
        projection_prng_key=settings.params.projection_prng_key,
        save_projection=True,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_randlora_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    shared = ours.shared
    # PEFT's bases are BufferDicts shared by all its layers (idempotent to rewrite per layer):
    # randlora_A (r, 1, d_min_all) and randlora_B (d_max_all, n_all, r), flattened over its last
    # two dims exactly like our pool. They are at least as large as ours; we fill the front.
    their_a, their_b = theirs.randlora_A["default"], theirs.randlora_B["default"]
    their_a[:, 0, : shared.randlora_A.shape[1]].copy_(shared.randlora_A)
    rows, cols = shared.randlora_B.shape
    their_b.view(their_b.shape[0], -1)[:rows, :cols].copy_(shared.randlora_B)
    nb = ours.num_bases
    if theirs.randlora_lambda["default"].shape != (ours.basis_rank, ours.full_bases):
        raise ValueError("PEFT's RandLoRA layer does not have the expected number of bases")
    # PEFT always uses all n_full bases: the ones U dropped get lambda = 0 (no contribution).
    lam, gamma = theirs.randlora_lambda["default"], theirs.randlora_gamma["default"]
    lam.zero_()
    lam[:, :nb].copy_(ours.randlora_lambda * ours.scaling)  # our forward folds s the same way
    gamma.zero_()
    gamma[:nb].copy_(ours.randlora_gamma)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=RandLoRALinear,
        peft_export=PeftExport(
            make_config=peft_randlora_config, copy_weights=copy_randlora_to_peft
        ),
    )
)
