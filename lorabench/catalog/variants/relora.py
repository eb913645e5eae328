"""`relora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.relora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class ReLoRAParams:
    """`restarts`: merge-and-reinit events per run (paper: 3-5; we take the middle, 4);
    `rewarm_steps`: steps over which the lr climbs back from 0 after each (paper: 10)."""

    restarts: int = 4
    rewarm_steps: int = 10

    def __post_init__(self) -> None:
        if self.restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {self.restarts!r}")
        if self.rewarm_steps < 0:
            raise ValueError(f"rewarm_steps must be >= 0, got {self.rewarm_steps!r}")


VARIANT = VariantInfo(
    name="relora",
    params_cls=ReLoRAParams,
    family="rank",
    equations="Eq. (12)-(13), (88)",
    merges=True,
    summary="LoRA merged into W and re-initialised a few times per run, with lr re-warm-up.",
    implementation="lorabench.variants.relora",
)
