"""`pissa`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.pissa."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class PiSSAParams:
    """svd_iters: subspace iterations of the fast SVD (paper: 64, PEFT's "pissa_niter_64");
    0 takes the exact SVD (PEFT's "pissa")."""

    svd_iters: int = 64

    def __post_init__(self) -> None:
        if self.svd_iters < 0:
            raise ValueError(f"svd_iters must be >= 0, got {self.svd_iters}")


VARIANT = VariantInfo(
    name="pissa",
    params_cls=PiSSAParams,
    family="initialization",
    equations="Eq. (90)-(92)",
    merges=True,
    summary="LoRA initialised from W's top-r singular triplets; the base keeps the residual.",
    implementation="lorabench.variants.pissa",
)
