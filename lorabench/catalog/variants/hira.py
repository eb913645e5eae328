"""`hira`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.hira."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.cost import AdapterCost, Call, Kept
from lorabench.catalog.variant import VariantInfo


@dataclass(frozen=True)
class HiRAParams:
    """The paper lists no HiRA hyperparameters beyond rank, alpha and dropout."""


def _kept(call: Call) -> Kept:
    # One matmul with W (.) (1 + s B A): the dense (out, in) effective weight is kept for the
    # input's gradient (the Hadamard product has no factored form).
    return Kept(compute=call.o * call.i)


VARIANT = VariantInfo(
    name="hira",
    params_cls=HiRAParams,
    family="rank",
    equations="Eq. (17)",
    merges=True,
    summary="Update W (.) (s B A): the frozen weight modulated elementwise by a low-rank B A.",
    peft=True,
    implementation="lorabench.variants.hira",
    cost=AdapterCost(activations=_kept),
)
