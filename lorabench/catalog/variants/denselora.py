"""`denselora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.denselora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class DenseLoRAParams:
    """No hyperparameters beyond rank and alpha (the paper raises those to 192 and 384)."""


VARIANT = VariantInfo(
    name="denselora",
    params_cls=DenseLoRAParams,
    family="rank",
    equations="Eq. (33)",
    merges=True,
    summary=(
        "A^S, B^S shared by modules of the same kind, a module-specific r x r C between them; "
        "the paper runs it at r=192, alpha=384 (set via the job's rank/alpha)."
    ),
    implementation="lorabench.variants.denselora",
)
