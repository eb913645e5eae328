"""VeRA (Kopiczko et al.): frozen shared random bases, trainable scaling vectors (§II-B2)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.vera import VARIANT, VeRAParams
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


def _kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> Tensor:
    # Kaiming uniform (gain sqrt(2), fan_in = columns), the VeRA paper's init of the bases.
    bound = math.sqrt(6.0 / shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class VeRAShared(SharedParameters):
    """Eq. (24): A^S (r, max_in) and B^S (max_out, r), frozen buffers drawn from a seed."""

    def __init__(self, rank: int, max_in: int, max_out: int, seed: int, device, dtype) -> None:
        super().__init__()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # Same draw order and shapes as PEFT's VeRA (A first), so one seed gives the same bases.
        vera_A = _kaiming_uniform((rank, max_in), gen)
        vera_B = _kaiming_uniform((max_out, rank), gen)
        self.register_buffer("vera_A", vera_A.to(device=device, dtype=dtype))
        self.register_buffer("vera_B", vera_B.to(device=device, dtype=dtype))


class VeRALinear(AdapterLinear):
    """W = W~ + s * diag(b) B^S[:out] diag(d) A^S[:, :in], with s = alpha / r (Eq. (26))."""

    variant_name = "vera"
    params_cls = VeRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        # Eq. (25): the only trainable parameters, the diagonals of Lambda_d and Lambda_b.
        self.vera_lambda_d = nn.Parameter(torch.empty(self.rank, **factory))
        self.vera_lambda_b = nn.Parameter(torch.empty(self.out_features, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # Eq. (26): s = alpha / r (PEFT's VeRA has none; copy_vera_to_peft folds it into b).
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        # VeRA/PEFT init: b = 0 makes the initial update zero; d starts at the constant d_initial.
        self.vera_lambda_d.fill_(self.params.d_initial)
        self.vera_lambda_b.zero_()

    def _bases(self) -> tuple[Tensor, Tensor]:
        # Eq. (26): this layer's slices A^S[:, :in] and B^S[:out] of the shared bases.
        shared = self.shared
        dtype = self.vera_lambda_d.dtype
        return (
            shared.vera_A[: self.rank, : self.in_features].to(dtype),
            shared.vera_B[: self.out_features, : self.rank].to(dtype),
        )

    def delta_weight(self) -> Tensor:
        a, b = self._bases()
        left = b * (self.vera_lambda_b * self.scaling)[:, None]
        return left @ (a * self.vera_lambda_d[:, None])

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Eq. (26) right to left: O(r * (in + out)) per token, like LoRA.
        a, b = self._bases()
        x = x.to(a.dtype)
        hidden = F.linear(x, a) * self.vera_lambda_d
        return F.linear(hidden, b) * (self.vera_lambda_b * self.scaling)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        return rank + out_features

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
        # Eq. (24): one pair for all layers, sized by the largest input and output dimensions.
        max_in = max(s.in_features for s in sites)
        max_out = max(s.out_features for s in sites)
        return VeRAShared(rank, max_in, max_out, params.projection_prng_key, device, dtype)

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        return 0  # the shared bases are frozen buffers


def peft_vera_config(settings: PeftSettings) -> Any:
    from peft import VeraConfig

    return VeraConfig(
        r=settings.rank,
        target_modules=settings.targets,
        vera_dropout=settings.dropout,
        d_initial=settings.params.d_initial,
        projection_prng_key=settings.params.projection_prng_key,
        # The bases travel with the export, so it round-trips whatever the bases are.
        save_projection=True,
        modules_to_save=settings.modules_to_save or None,
    )


@torch.no_grad()
def copy_vera_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    shared = ours.shared
    # PEFT's vera_A/vera_B are one BufferDict shared by all its layers: writing it here is
    # idempotent across layers. Its bases have our orientation: A (r, max_in), B (max_out, r).
    their_a, their_b = theirs.vera_A["default"], theirs.vera_B["default"]
    their_a[:, : shared.vera_A.shape[1]].copy_(shared.vera_A)
    their_b[: shared.vera_B.shape[0]].copy_(shared.vera_B)
    theirs.vera_lambda_d["default"].copy_(ours.vera_lambda_d)
    # PEFT computes diag(b) B diag(d) A without a scaling: fold s into b.
    theirs.vera_lambda_b["default"].copy_(ours.vera_lambda_b * ours.scaling)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=VeRALinear,
        peft_export=PeftExport(make_config=peft_vera_config, copy_weights=copy_vera_to_peft),
    )
)
