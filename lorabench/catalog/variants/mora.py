"""`mora`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.mora."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, never
from lorabench.catalog.variant import VariantInfo

COMPRESSIONS = ("rope", "sharing")


@dataclass(frozen=True)
class MoRAParams:
    """MoRA's compression/decompression operator: "rope" (type 6) or "sharing" (type 1)."""

    compression: str = "rope"

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")


def mora_rank(in_features: int, out_features: int, rank: int, compression: str = "rope") -> int:
    """Side r^ of M: r^2 closest to LoRA's r (in + out) parameters (MoRA's rounding)."""
    r_hat = int(math.sqrt((in_features + out_features) * rank) + 0.5)
    if compression == "rope":
        return max(2, r_hat // 2 * 2)  # the rotation acts on channel pairs: r^ even
    return max(1, r_hat)


def _params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    params = params if params is not None else MoRAParams()
    return mora_rank(in_features, out_features, rank, params.compression) ** 2


def _kept(call: Call) -> Kept:
    # M's input per token: all ceil(in / r^) rotated blocks (rope) or their sum (sharing).
    # The compression is an index gather, which keeps no copy of the layer input.
    r_hat = mora_rank(call.i, call.o, call.rank, call.params.compression)
    width = -(-call.i // r_hat) * r_hat if call.params.compression == "rope" else r_hat
    return Kept(compute=call.tokens * width)


VARIANT = VariantInfo(
    name="mora",
    params_cls=MoRAParams,
    family="rank",
    equations="§II-B1 [46] (no equation in the paper; MoRA Eqs. (6), (9))",
    merges=True,
    summary="Square r^ x r^ matrix M between RoPE/sharing compression and decompression.",
    implementation="lorabench.variants.mora",
    cost=AdapterCost(params=_params, activations=_kept, saves_input=never),
)
