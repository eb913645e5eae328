"""`mola`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.mola."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


def parse_allocation(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"allocation must be comma-separated positive ints, got {text!r}")
    return counts


@dataclass(frozen=True)
class MoLAParams:
    # MoLA-△ (2-4-6-8 from the lowest to the highest quarter of the blocks), top-2 routing,
    # MoLA's router_aux_loss_coef 0.001.
    allocation: str = "2,4,6,8"
    top_k: int = 2
    aux_loss_coeff: float = 0.001

    def __post_init__(self) -> None:
        parse_allocation(self.allocation)
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.aux_loss_coeff < 0:
            raise ValueError(f"aux_loss_coeff must be >= 0, got {self.aux_loss_coeff}")


VARIANT = VariantInfo(
    name="mola",
    params_cls=MoLAParams,
    family="moe",
    equations="Eq. (124), (125), (126)",
    merges=False,
    summary="Top-2 LoRA experts with more experts in higher layers (2-4-6-8 allocation).",
    implementation="lorabench.variants.mola",
)
