"""`eva`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.eva."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class EvaParams:
    """steps: activation batches for the incremental SVD (paper: 64).
    tau: convergence threshold, the cosine similarity of each component between two
    consecutive SVD steps (paper: 0.9; PEFT's EvaConfig.tau).
    rho: a layer gets at most round(rho * r) ranks (PEFT's EvaConfig.rho default, 2.0)."""

    steps: int = 64
    tau: float = 0.9
    rho: float = 2.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.rho < 1.0:
            raise ValueError(f"rho must be >= 1, got {self.rho}")


VARIANT = VariantInfo(
    name="eva",
    params_cls=EvaParams,
    family="initialization",
    equations="Eq. (55), (116)-(123)",
    merges=True,
    summary=(
        "A = top input principal directions (incremental SVD), B = 0; ranks "
        "redistributed by explained variance."
    ),
    peft=True,
    implementation="lorabench.variants.eva",
)
