"""`corda`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.corda."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Kept, SiteShape, input_group
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


def _frozen(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    # The initial factors A0, B0 (adapter dtype), kept for the PEFT export.
    return Kept(fp32=sum(rank * (s.in_features + s.out_features) for s in sites))


def _prepare(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    # One fp32 (in, in) input covariance per group of layers reading the same input.
    widths = {input_group(s): s.in_features for s in sites}
    return sum(width * width for width in widths.values())


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
    cost=AdapterCost(frozen=_frozen, prepare=_prepare),
)
