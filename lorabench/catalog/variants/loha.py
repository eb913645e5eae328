"""`loha`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.loha."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoHAParams:
    """The paper lists no LoHA hyperparameters beyond rank, alpha and dropout."""


VARIANT = VariantInfo(
    name="loha",
    params_cls=LoHAParams,
    family="rank",
    equations="Eq. (16)",
    merges=True,
    summary="Hadamard product of two rank-r updates: rank up to r^2 for 2x LoRA's params.",
    peft=True,
    implementation="lorabench.variants.loha",
)
