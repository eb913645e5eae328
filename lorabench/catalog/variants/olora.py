"""`olora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.olora."""

from __future__ import annotations

from lorabench.catalog.variant import NoParams, VariantInfo

VARIANT = VariantInfo(
    name="olora",
    params_cls=NoParams,
    family="initialization",
    equations="Eq. (95)",
    merges=True,
    summary="LoRA initialised from a QR of W (orthonormal B); the base keeps the residual.",
    peft=True,
    implementation="lorabench.variants.olora",
)
