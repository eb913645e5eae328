"""`melora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.melora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class MeLoRAParams:
    # Paper, variant-specific hyperparameters: "The number of diagonal blocks is set to 2".
    blocks: int = 2

    def __post_init__(self) -> None:
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")


def _kept(call: Call) -> Kept:
    # k blocks' rank-r hiddens (k = min(blocks, in, out)).
    blocks = min(call.params.blocks, call.i, call.o)
    return Kept(compute=call.tokens * blocks * call.rank)


VARIANT = VariantInfo(
    name="melora",
    params_cls=MeLoRAParams,
    family="rank",
    equations="Eq. (14), (15)",
    merges=True,
    summary=(
        "k mini-LoRAs of rank r on the block diagonal (k=2): rank up to k*r at LoRA's "
        "parameter count."
    ),
    implementation="lorabench.variants.melora",
    cost=AdapterCost(activations=_kept),
)
