"""`corda`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.corda."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo

MODES = ("ipm", "kpm")


@dataclass(frozen=True)
class CordaParams:
    """samples: sequences whose activations build C (CorDA's calib_loader_size, 256).
    mode: "ipm" instruction-previewed (largest components; PEFT's default corda_method) or
    "kpm" knowledge-preserved (smallest components)."""

    samples: int = 256
    mode: str = "ipm"

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


VARIANT = VariantInfo(
    name="corda",
    params_cls=CordaParams,
    family="initialization",
    equations="Eq. (110)-(115)",
    merges=True,
    summary=(
        "Covariance-oriented SVD of W: r components (IPM: largest) become the "
        "adapter, the rest stays frozen."
    ),
    peft=True,
    implementation="lorabench.variants.corda",
)
