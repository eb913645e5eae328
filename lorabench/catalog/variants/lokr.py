"""`lokr`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lokr."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoKrParams:
    """k: cap on the small Kronecker factor's side in Eqs. (18)-(19) (PEFT's decompose_factor).

    The paper leaves k open; -1 (no cap, so the largest divisor <= sqrt(dim)) is the default of
    LyCORIS and PEFT. The paper's own codebase defaults to k = 32, which differs only for
    dimensions with a divisor in (32, sqrt(dim)], e.g. 4096 (32 x 128 instead of 64 x 64).
    """

    k: int = -1

    def __post_init__(self) -> None:
        if self.k != -1 and self.k < 1:
            raise ValueError(f"k must be a positive int or -1 (no cap), got {self.k}")


VARIANT = VariantInfo(
    name="lokr",
    params_cls=LoKrParams,
    family="rank",
    equations="Eqs. (18)-(21)",
    merges=True,
    summary="Kronecker product of a small rank-r factor B A and a full factor C.",
    peft=True,
    implementation="lorabench.variants.lokr",
)
