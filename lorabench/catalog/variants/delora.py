"""`delora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.delora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class DeLoRAParams:
    """delora_lambda: initial value of the trainable strength lambda (the paper's 8).
    seed: seed of the kaiming-uniform init of A and B (mixed with each layer's name)."""

    delora_lambda: float = 8.0
    seed: int = 0


VARIANT = VariantInfo(
    name="delora",
    params_cls=DeLoRAParams,
    family="optimization",
    equations="Eqs. (69)-(70)",
    merges=True,
    summary="Normalised rank-one directions scaled by a learnt lambda ||W|| / r (bounded).",
    peft=True,
    implementation="lorabench.variants.delora",
)
