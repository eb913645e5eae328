"""`randlora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.randlora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class RandLoRAParams:
    """basis_rank: rank r of each random basis (paper: 32; 0 takes the layer's `rank`).
    max_basis_dim: U, the cap on the total rank n_b * r of one layer (paper: 1024).
    projection_prng_key: seed of the shared random bases (PEFT's `projection_prng_key`)."""

    basis_rank: int = 32
    max_basis_dim: int = 1024
    projection_prng_key: int = 0

    def __post_init__(self) -> None:
        if self.basis_rank < 0:
            raise ValueError(f"basis_rank must be >= 0 (0: use rank), got {self.basis_rank}")
        if self.max_basis_dim < 1:
            raise ValueError(f"max_basis_dim must be >= 1, got {self.max_basis_dim}")


VARIANT = VariantInfo(
    name="randlora",
    params_cls=RandLoRAParams,
    family="rank",
    equations="Eq. (31)-(32)",
    merges=True,
    summary="Sum of n_b shared frozen random bases scaled by trainable diagonals; full rank.",
    peft=True,
    implementation="lorabench.variants.randlora",
)
