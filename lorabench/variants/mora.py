"""MoRA (Jiang et al. 2024; paper ref [46], §II-B1 rank expansion): one square matrix M.

MoRA spends LoRA's budget r (in + out) on a single trainable r^ x r^ matrix M, so the update can
reach rank r^ >> r, and wraps it in parameter-free compression (in -> r^) and decompression
(r^ -> out) operators that are linear, so the update is a fixed matrix and merges exactly.
The benchmark paper only lists MoRA (§II-B1), so everything below follows MoRA's official code
(github.com/kongds/MoRA, ``peft-mora`` ``_apply_mora`` / ``get_delta_weight``) and the
benchmark authors' port (LoRAFactory / MyTransformers ``common/lora_modules/mora.py``):

* r^ = round(sqrt((in + out) * r)) (official ``int(sqrt(...) + 0.5)``, so r^2 ~ r (in + out));
  the rotation variant rounds r^ down to an even number (it rotates pairs of channels).
* Compression: x is padded cyclically to k r^ entries (k = ceil(in / r^)) and cut into k blocks
  of r^. Decompression: the output vector is repeated cyclically and truncated to ``out``.
* ``compression="rope"`` (MoRA's type 6, the paper's Eq. (9); the default: MoRA recommends it
  for small ranks such as the benchmark's r = 8, and LoRAFactory defaults to it): block i is
  rotated RoPE-style by position i (theta_j = 10000^(-2j/r^)), M is applied to every block and
  the k outputs are concatenated.
* ``compression="sharing"`` (MoRA's type 1, Eq. (6), recommended for large ranks): the blocks
  are summed, M is applied once, and its r^ outputs are shared (repeated) across ``out``.
* M = 0 at init (official), so the initial update is zero; the scaling is 1 (the official code
  sets scaling = 1.0 for MoRA and ignores alpha).

Generalisation for tiny layers: the official padding copies x[:pad], which breaks when
pad > in; cyclic padding (x_{j mod in}) is identical whenever the official code works and
also covers r^ > in. r^ is at least 1 (2 for the rotation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.mora import VARIANT, MoRAParams
from lorabench.variants.base import AdapterLinear, VariantSpec, adapter_factory, register


def mora_rank(in_features: int, out_features: int, rank: int, compression: str = "rope") -> int:
    """Side r^ of M: r^2 closest to LoRA's r (in + out) parameters (MoRA's rounding)."""
    r_hat = int(math.sqrt((in_features + out_features) * rank) + 0.5)
    if compression == "rope":
        # The rotation acts on channel pairs (rotate-half), so r^ must be even.
        return max(2, r_hat // 2 * 2)
    return max(1, r_hat)


class MoRALinear(AdapterLinear):
    """y = W x + decompress(M compress(x)); M: (r^, r^), trainable, zero at init."""

    variant_name = "mora"
    params_cls = MoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        device = base.weight.device
        n_in, n_out = self.in_features, self.out_features
        self.mora_rank = r_hat = mora_rank(n_in, n_out, self.rank, self.params.compression)
        self.n_blocks = k = -(-n_in // r_hat)
        self.mora_M = nn.Parameter(torch.empty(r_hat, r_hat, **adapter_factory(base)))
        # Fixed index maps of the compression / decompression operators (not saved: derived).
        in_index = torch.arange(k * r_hat, device=device) % n_in
        width = k * r_hat if self.params.compression == "rope" else r_hat
        out_index = torch.arange(n_out, device=device) % width
        self.register_buffer("in_index", in_index, persistent=False)
        self.register_buffer("out_index", out_index, persistent=False)
        if self.params.compression == "rope":
            cos, sin = rope_tables(k, r_hat)
            self.register_buffer("rope_cos", cos.to(device), persistent=False)
            self.register_buffer("rope_sin", sin.to(device), persistent=False)
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # MoRA has no alpha / r factor: the official code fixes the scaling at 1.
        return 1.0

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # MoRA initialises M to zero, so the wrapped layer starts as the base layer.
        self.mora_M.zero_()

    def delta_weight(self) -> Tensor:
        """Dense (out, in) update, built block by block from explicit operator matrices."""
        M = self.mora_M
        r_hat, k, n_in = self.mora_rank, self.n_blocks, self.in_features
        if self.params.compression == "rope":
            # Block b maps its inputs through M @ Rot_b with Rot_b = diag(cos_b) + diag(sin_b) J.
            cos, sin = self.rope_cos.to(M.dtype), self.rope_sin.to(M.dtype)
            rot = torch.diag_embed(cos) + sin.unsqueeze(-1) * rotate_half_matrix(r_hat, M)
            blocks = M.unsqueeze(0) @ rot  # (k, r^, r^)
        else:
            blocks = M.unsqueeze(0).expand(k, r_hat, r_hat)
        # Column u of block b reads input (b r^ + u) mod in: scatter it there.
        columns = self.in_index.view(k, 1, r_hat).expand(k, r_hat, r_hat)
        rows = M.new_zeros(k, r_hat, n_in).scatter_add(2, columns, blocks)
        rows = rows.reshape(k * r_hat, n_in) if self.params.compression == "rope" else rows.sum(0)
        # Decompression: output j is row j mod width (cyclic repetition).
        return rows.index_select(0, self.out_index) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        M = self.mora_M
        x = x.to(M.dtype)
        lead = x.shape[:-1]
        blocks = x.index_select(-1, self.in_index).view(*lead, self.n_blocks, self.mora_rank)
        if self.params.compression == "rope":
            cos, sin = self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)
            half = self.mora_rank // 2
            rotated = torch.cat((-blocks[..., half:], blocks[..., :half]), dim=-1)
            out = F.linear(blocks * cos + rotated * sin, M).reshape(*lead, -1)
        else:
            out = F.linear(blocks.sum(dim=-2), M)
        return out.index_select(-1, self.out_index) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        params = params if params is not None else MoRAParams()
        return mora_rank(in_features, out_features, rank, params.compression) ** 2


def rope_tables(n_blocks: int, r_hat: int) -> tuple[Tensor, Tensor]:
    """cos/sin (n_blocks, r^) of MoRA's RoPE: block i at position i, theta_j = 10000^(-2j/r^)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, r_hat, 2, dtype=torch.float64) / r_hat))
    angles = torch.outer(torch.arange(n_blocks, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half_matrix(r_hat: int, like: Tensor) -> Tensor:
    """J with J v = cat(-v[h:], v[:h]) for h = r^ / 2 (the rotate-half of RoPE)."""
    half = r_hat // 2
    eye = torch.eye(half, dtype=like.dtype, device=like.device)
    zero = torch.zeros_like(eye)
    return torch.cat((torch.cat((zero, -eye), 1), torch.cat((eye, zero), 1)), 0)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=MoRALinear,
        peft_export=None,
    )
)
