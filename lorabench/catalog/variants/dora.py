"""`dora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.dora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class DoRAParams:
    """The paper lists no DoRA hyperparameters beyond rank, alpha and dropout."""


VARIANT = VariantInfo(
    name="dora",
    params_cls=DoRAParams,
    family="optimization",
    equations="Eq. (68), (135)",
    merges=True,
    summary="Learned per-row magnitude times the normalised direction W + s B A.",
    peft=True,
    implementation="lorabench.variants.dora",
)
