"""MiLoRA (Wang et al.): LoRA factors from the minor singular triplets of W, base replaced by the
residual (paper §II-D1, Eqs. (93)-(94)); PiSSA's scheme applied to the bottom of the spectrum."""

from __future__ import annotations

import torch
from torch import Tensor

from lorabench.catalog.variants.milora import VARIANT
from lorabench.variants.base import NoParams, VariantSpec, register
from lorabench.variants.pissa import ResidualLoRALinear, split_singular


class MiLoRALinear(ResidualLoRALinear):
    """Eqs. (93)-(94): A0, B0 from the r smallest singular triplets (exact SVD, as MiLoRA's own
    code); base = W - s * B0 A0. The principal subspace stays untouched in the frozen base."""

    variant_name = "milora"
    params_cls = NoParams

    def initial_factors(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        k = min(self.rank, *weight.shape)
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        # Singular values come sorted descending: the last k are the minor components.
        return split_singular(u[:, -k:], s[-k:], vh[-k:], self.scaling)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=MiLoRALinear,
    )
)
