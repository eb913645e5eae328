"""What one wrapped layer costs besides its frozen weight, in closed form and without torch.

A variant declares an `AdapterCost` (`VariantInfo.cost`): the trainable parameters it adds per
layer and across layers, the frozen buffers it holds, what its training forward keeps for
backward, and what its `prepare` holds. `lorabench.memory` turns these element counts into
bytes before a job starts (`plan --dry-run`, `tasks NAME`). The implementations keep their own
`expected_param_count` / `shared_param_count`; tests/test_memory_estimate.py checks that both
give the same count for every variant.

"Kept for backward" follows PyTorch's autograd: an op saves an input only when the gradient of
another input needs it, so a frozen matmul saves its weight, never its input, and a trainable
one saves its input. Counts are of one forward call (one micro-batch) of one wrapped layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class SiteShape(NamedTuple):
    """One nn.Linear a variant wraps, as `lorabench.variants.base.Site` describes it (same
    fields, same order), so closed forms written for sites read either."""

    name: str
    kind: str  # the last name component ("q_proj"): RaSA and DenseLoRA group by it
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Kept:
    """Tensor elements, by the dtype they are held in."""

    compute: int = 0  # the job's compute dtype: bf16 under bf16 autocast or a 16-bit base
    fp32: int = 0  # adapter dtype (adapters and their statistics are fp32 whatever the base)
    base: int = 0  # the frozen base weights' dtype

    def __add__(self, other: Kept) -> Kept:
        return Kept(self.compute + other.compute, self.fp32 + other.fp32, self.base + other.base)


@dataclass(frozen=True)
class Call:
    """One training forward of one wrapped layer: what a variant's activation formula reads."""

    site: SiteShape
    tokens: int  # rows the layer sees in one micro-batch (batch x positions)
    rank: int
    params: Any  # the variant's hyperparameter dataclass
    sites: tuple[SiteShape, ...]  # every wrapped layer (MoLA's allocation, RaSA's groups)
    dropout: float = 0.0

    @property
    def i(self) -> int:
        return self.site.in_features

    @property
    def o(self) -> int:
        return self.site.out_features


LayerParams = Callable[[int, int, int, Any], int]  # (in, out, rank, params) -> trainable count
SitesCount = Callable[[Sequence[SiteShape], int, Any], int]  # (sites, rank, params) -> count
SitesKept = Callable[[Sequence[SiteShape], int, Any], Kept]


def lora_params(in_features: int, out_features: int, rank: int, params: Any = None) -> int:
    """LoRA's A (r, in) and B (out, r)."""
    return rank * (in_features + out_features)


def no_count(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    return 0


def nothing_kept(sites: Sequence[SiteShape], rank: int, params: Any = None) -> Kept:
    return Kept()


def lora_hidden(call: Call) -> Kept:
    """LoRA's forward keeps the rank-r hidden B's gradient needs (its input copy is counted by
    `saves_input`)."""
    return Kept(compute=call.tokens * call.rank)


def always(call: Call) -> bool:
    return True


def never(call: Call) -> bool:
    return False


@dataclass(frozen=True)
class AdapterCost:
    """A variant's memory in closed form; the defaults are LoRA's."""

    params: LayerParams = lora_params  # trainable, per wrapped layer (its own)
    shared: SitesCount = no_count  # trainable, held once for all layers (RaSA, DenseLoRA, MoLA)
    frozen: SitesKept = nothing_kept  # buffers (random bases, initial factors, statistics)
    # What one forward keeps for backward besides the layer input (see `saves_input`).
    activations: Callable[[Call], Kept] = lora_hidden
    # Whether the adapter keeps its layer input for backward (its first factor's gradient):
    # a cast copy per layer under bf16, the shared input under fp32.
    saves_input: Callable[[Call], bool] = always
    # fp32 elements `prepare` holds at once (gradient sums, covariances), and whether it runs
    # a backward pass (so training-size activations are alive meanwhile).
    prepare: SitesCount = no_count
    prepare_backward: bool = False


LORA_COST = AdapterCost()

# Wrapped layers that read the very same input tensor (one attention or MLP input feeds all
# of them): under fp32 their saved input is one tensor, and CorDA keeps one covariance for it.
SHARED_INPUT_KINDS = (
    frozenset({"q_proj", "k_proj", "v_proj"}),
    frozenset({"query", "key", "value"}),
    frozenset({"gate_proj", "up_proj"}),
)


def input_group(site: SiteShape) -> str:
    """A name shared by the sites that read the same input: parent module + kind group."""
    parent = site.name.rpartition(".")[0]
    for kinds in SHARED_INPUT_KINDS:
        if site.kind in kinds:
            return f"{parent}:{'+'.join(sorted(kinds))}"
    return site.name
