"""Shared machinery of the mixture-of-experts LoRA variants (paper §II-E, Eq. (124)-(126)).

Experts of rank r_i are stored as row blocks of one (R, in) matrix A and column blocks of one
(out, R) matrix B, R = sum r_i, with an (E, in) router. Eq. (124)

    y = W x + sum_i w_i(x) * s_i * B_i A_i x

is then ONE factored pass: h = A x (all experts at once), h_j *= s_e(j) * w_e(j)(x) for each
rank column j of expert e(j), y_delta = B h. That is "dense masking": every expert's A x is
computed for every token and the top-k mask zeroes the others' weights, which at the paper's
8 rank-one experts costs exactly a rank-8 LoRA (gather/scatter would add indexing work to save
nothing). No Python loop over tokens or experts.

Router statistics (softmax probabilities and the top-k mask) are stashed by each layer during a
training-mode forward, and the variant's `extra_loss` hook collects and clears them; eval-mode
forwards stash nothing. A layer keeps only its latest training forward's statistics (the
trainer calls extra_loss after every micro-batch), so forwards whose loss is never collected
(benchmarks) cannot pile up autograd graphs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.variants.base import AdapterLinear, adapter_factory


def split_ranks(rank: int, experts: int) -> list[int]:
    """Ranks of min(experts, rank) experts summing to `rank`; uneven splits give the first
    experts one rank more (rank 8 over 8 experts: eight rank-1 experts, the paper's setting)."""
    n = max(1, min(experts, rank))
    base, extra = divmod(rank, n)
    return [base + 1] * extra + [base] * (n - extra)


@dataclass
class RouterOutput:
    probs: Tensor  # (..., E) fp32 softmax over all experts, g(x)
    weights: Tensor  # (..., E) fp32 routing weights w(x): top-k of probs, renormalised
    mask: Tensor  # (..., E) bool, True for the experts each token activates


def route(logits: Tensor, top_k: int) -> RouterOutput:
    """Eq. (125): keep the top-k softmax gates and renormalise them to sum to one (GOAT, MoLA;
    identical to LoRAFactory's softmax over the top-k logits). top_k >= E is dense routing, the
    plain softmax (LoRAMoE, HydraLoRA)."""
    probs = torch.softmax(logits.float(), dim=-1)
    experts = probs.shape[-1]
    if top_k >= experts:
        return RouterOutput(probs, probs, torch.ones_like(probs, dtype=torch.bool))
    chosen = probs.topk(top_k, dim=-1).indices
    mask = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, chosen, True)
    kept = probs * mask
    return RouterOutput(probs, kept / kept.sum(dim=-1, keepdim=True), mask)


def switch_balance_loss(probs: Tensor, mask: Tensor) -> Tensor:
    """Eq. (126): N * sum_i f_i * P_i with f_i the fraction of tokens routing to expert i (each
    token counts once per activated expert, so f sums to k) and P_i the mean gate probability."""
    experts = probs.shape[-1]
    f = mask.reshape(-1, experts).float().mean(dim=0)
    p = probs.reshape(-1, experts).mean(dim=0)
    return experts * (f * p).sum()


def kaiming_uniform_(weight: Tensor) -> None:
    """kaiming_uniform_(a=sqrt(5)) on a (rows, fan_in) weight, as nn.Linear and PEFT draw it."""
    bound = 1.0 / math.sqrt(weight.shape[1])
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class RouterStash:
    """Holds a layer's latest training-mode router statistics until extra_loss takes them.

    A plain attribute (not a buffer): never saved, never moved. Deep copies start empty, since
    stashed tensors are non-leaf autograd tensors that cannot be deep-copied.
    """

    def __init__(self) -> None:
        self.stats: RouterOutput | None = None

    def put(self, stats: RouterOutput) -> None:
        self.stats = stats

    def take(self) -> RouterOutput | None:
        stats, self.stats = self.stats, None
        return stats

    def __deepcopy__(self, memo: dict) -> RouterStash:
        return RouterStash()


def take_router_stats(model: nn.Module, cls: type) -> Iterator[tuple[nn.Module, RouterOutput]]:
    """Every `cls` layer's stashed statistics, clearing each stash (all of them, even if the
    caller stops early)."""
    taken = []
    for module in model.modules():
        if isinstance(module, cls):
            stats = module.router_stash.take()
            if stats is not None:
                taken.append((module, stats))
    return iter(taken)


def summed_layer_loss(
    model: nn.Module, cls: type, coeff: float, layer_loss: Callable[[Any, RouterOutput], Tensor]
) -> Tensor | None:
    """coeff * sum over layers of layer_loss; None when no layer stashed statistics (the model
    is in eval mode or ran no forward since the last call) or the coefficient is zero."""
    losses = [layer_loss(layer, stats) for layer, stats in take_router_stats(model, cls)]
    if not losses or coeff == 0:
        return None
    return coeff * torch.stack([loss.float() for loss in losses]).sum()


_LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """The block index in a module path: the first all-digit component
    ("bert.encoder.layer.3.attention.self.query" -> 3, "2" -> 2); None if there is none."""
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None


class RoutedLoRALinear(AdapterLinear):
    """Eq. (124) with experts of ranks `expert_ranks` packed into lora_A (R, in), lora_B (out,
    R) and a router lora_router (E, in) acting on the layer input (not the dropped-out one).

    Subclasses give `expert_ranks`, `top_k`, per-expert scalings and the initialisation.
    The update depends on the input, so it has no dense delta: these variants never merge.
    """

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        ranks = self.make_expert_ranks()
        self.expert_ranks = ranks
        self.n_experts = len(ranks)
        factory = adapter_factory(base)
        self.create_factors(sum(ranks), factory)
        owner = torch.repeat_interleave(torch.arange(self.n_experts), torch.tensor(ranks))
        # Derived from the shapes, so not persistent: expert of each rank column, and its s_i.
        self.register_buffer("expert_of_rank", owner.to(base.weight.device), persistent=False)
        scales = torch.tensor(self.expert_scalings(), dtype=torch.float32)[owner]
        self.register_buffer("rank_scale", scales.to(**factory), persistent=False)
        self.router_stash = RouterStash()
        self.reset_adapter_parameters()

    # --- to be provided by subclasses -----------------------------------------------------------
    def make_expert_ranks(self) -> list[int]:
        raise NotImplementedError

    def create_factors(self, total_rank: int, factory: dict[str, Any]) -> None:
        """lora_A (R, in), lora_B (out, R), lora_router (E, in): the layer's own parameters
        unless a subclass keeps them elsewhere (MoLA's model-level allocation)."""
        self.lora_A = nn.Parameter(torch.empty(total_rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, total_rank, **factory))
        self.lora_router = nn.Parameter(torch.empty(self.n_experts, self.in_features, **factory))

    def expert_scalings(self) -> list[float]:
        """s_i of each expert (Eq. (124)'s gamma_r, or GOAT's per-expert scale)."""
        return [self.scaling] * self.n_experts

    @property
    def top_k(self) -> int:
        raise NotImplementedError

    # --- routing and the factored forward -------------------------------------------------------
    def route(self, x: Tensor) -> RouterOutput:
        return route(F.linear(x.to(self.lora_router.dtype), self.lora_router), self.top_k)

    def rank_gates(self, routing: RouterOutput) -> Tensor:
        """(..., R): each rank column's s_i * w_i(x)."""
        return routing.weights[..., self.expert_of_rank] * self.rank_scale

    def mix_experts(self, x: Tensor, gates: Tensor) -> Tensor:
        x = x.to(self.lora_A.dtype)
        hidden = F.linear(x, self.lora_A)
        return F.linear(hidden * gates.to(hidden.dtype), self.lora_B)

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Standalone use: routes on x itself and stashes nothing.
        return self.mix_experts(x, self.rank_gates(self.route(x)))

    def adapted_forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        # Routed outside run_adapter: activation checkpointing recomputes the experts only, so
        # the statistics are stashed once per forward.
        routing = self.route(x)
        if self.training:
            self.router_stash.put(routing)
        delta = self.run_adapter(self.mix_experts, self.dropout(x), self.rank_gates(routing))
        return out + delta.to(out.dtype)

    def delta_weight(self) -> Tensor:
        raise NotImplementedError(
            f"{self.variant_name}: the update depends on the input through the router, so there "
            "is no dense delta to merge"
        )

    def expert_factors(self, i: int) -> tuple[Tensor, Tensor]:
        """(A_i, B_i) of expert i: views into the packed matrices."""
        start = sum(self.expert_ranks[:i])
        stop = start + self.expert_ranks[i]
        return self.lora_A[start:stop], self.lora_B[:, start:stop]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, experts={self.n_experts}, ranks={self.expert_ranks}, "
            f"top_k={self.top_k}"
        )
