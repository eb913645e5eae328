"""`vera`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.vera."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class VeRAParams:
    """d_initial: constant initial value of the vector d (PEFT's `d_initial`).
    projection_prng_key: seed of the shared random bases (PEFT's `projection_prng_key`)."""

    d_initial: float = 0.1
    projection_prng_key: int = 0


VARIANT = VariantInfo(
    name="vera",
    params_cls=VeRAParams,
    family="rank",
    equations="Eq. (24)-(26)",
    merges=True,
    summary="Frozen shared random A, B sliced per layer; trains only vectors d and b.",
    notes=(
        "Scales the update by alpha/r (Eq. (26)); PEFT's VeRA has no scaling, so the same d "
        "and b give alpha/r times PEFT's update (2x PEFT's at the default alpha = 2r). The "
        "PEFT export folds alpha/r into b, so exported models match."
    ),
    peft=True,
    implementation="lorabench.variants.vera",
)
