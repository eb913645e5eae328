"""`milora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.milora."""

from __future__ import annotations

from lorabench.catalog.variant import NoParams, VariantInfo

VARIANT = VariantInfo(
    name="milora",
    params_cls=NoParams,
    family="initialization",
    equations="Eq. (93)-(94)",
    merges=True,
    summary="LoRA initialised from W's minor (bottom-r) singular triplets; base = residual.",
    implementation="lorabench.variants.milora",
)
