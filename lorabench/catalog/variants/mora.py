"""`mora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.mora."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.variant import VariantInfo

COMPRESSIONS = ("rope", "sharing")


@dataclass(frozen=True)
class MoRAParams:
    """MoRA's compression/decompression operator: "rope" (type 6) or "sharing" (type 1)."""

    compression: str = "rope"

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")


VARIANT = VariantInfo(
    name="mora",
    params_cls=MoRAParams,
    family="rank",
    equations="§II-B1 [46] (no equation in the paper; MoRA Eqs. (6), (9))",
    merges=True,
    summary="Square r^ x r^ matrix M between RoPE/sharing compression and decompression.",
    implementation="lorabench.variants.mora",
)
