"""`loran`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.loran."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class LoRANParams:
    """Sinter's amplitude and frequency (LoRAFactory defaults: loran_amp = loran_freq = 1)."""

    amp: float = 1.0
    freq: float = 1.0


def _kept(call: Call) -> Kept:
    # LoRA's hidden plus the (tokens, out) low-rank output Sinter keeps for its backward.
    return Kept(compute=call.tokens * (call.rank + call.o))


VARIANT = VariantInfo(
    name="loran",
    params_cls=LoRANParams,
    family="optimization",
    equations="§II-C2 [74] (no equation in the paper; Sinter from LoRAFactory)",
    merges=False,
    summary="LoRA output passed through Sinter(z) = z + amp*sin(freq*z)*z; not mergeable.",
    implementation="lorabench.variants.loran",
    cost=AdapterCost(activations=_kept),
)
