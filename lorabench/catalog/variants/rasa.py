"""`rasa`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.rasa."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class RaSAParams:
    # Paper, variant-specific hyperparameters: "The shared rank k is set to 1".
    shared_rank: int = 1

    def __post_init__(self) -> None:
        if self.shared_rank < 1:
            raise ValueError(f"shared_rank must be >= 1, got {self.shared_rank}")


VARIANT = VariantInfo(
    name="rasa",
    params_cls=RaSAParams,
    family="rank",
    equations="Eq. (27)",
    merges=True,
    summary=(
        "r-k local ranks plus a pool of k ranks per module shared by all modules of the same "
        "kind and shape, weighted by a trainable diagonal D; effective rank r-k+kL."
    ),
    implementation="lorabench.variants.rasa",
)
