"""LoRAMoE: routed rank-split experts, top-k routing and the localized balancing constraint."""

import copy
import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant
from lorabench.variants._moe import layer_index, route, split_ranks
from lorabench.variants.loramoe import LoRAMoELinear, LoRAMoEParams

SPEC = get_variant("loramoe")


def make(in_f=6, out_f=5, rank=8, alpha=16.0, **params) -> LoRAMoELinear:
    torch.manual_seed(0)
    return LoRAMoELinear(nn.Linear(in_f, out_f), rank=rank, alpha=alpha,
                         params=LoRAMoEParams(**params))  # fmt: skip


def reference_update(layer: LoRAMoELinear, x: torch.Tensor) -> torch.Tensor:
    """Slow Eq. (124)-(125): per token, softmax, pick the top-k, renormalise, sum the experts."""
    rows = []
    for token in x.reshape(-1, x.shape[-1]):
        probs = torch.softmax(layer.lora_router @ token, dim=-1)
        chosen = torch.argsort(probs, descending=True)[: layer.top_k]
        total = sum(probs[i] for i in chosen)
        out = torch.zeros(layer.out_features)
        for i in chosen.tolist():
            a, b = layer.expert_factors(i)
            out += probs[i] / total * layer.scaling * (b @ (a @ token))
        rows.append(out)
    return torch.stack(rows).reshape(*x.shape[:-1], layer.out_features)


def test_defaults_follow_the_paper():
    params = build_params("loramoe", None)
    assert params == LoRAMoEParams(experts=8, top_k=2, lbc_delta=0.1, lbc_weight=0.1)
    layer = make(rank=8, alpha=16)
    # "8 experts, each expert with a rank of 1, resulting in a total rank of 8; 2 activated".
    assert layer.expert_ranks == [1] * 8 and layer.top_k == 2
    assert layer.lora_A.shape == (8, 6) and layer.lora_B.shape == (5, 8)
    assert layer.lora_router.shape == (8, 6)
    assert layer.scaling == 2.0  # Eq. (124): alpha / r with the total rank
    assert SPEC.family == "moe" and not SPEC.merges and SPEC.extra_loss is not None
    with pytest.raises(InvalidVariantParams):
        build_params("loramoe", {"experts": 0})
    with pytest.raises(InvalidVariantParams):
        build_params("loramoe", {"lbc_delta": 1.5})


def test_rank_splits_and_param_count():
    assert split_ranks(8, 8) == [1] * 8
    assert split_ranks(12, 8) == [2, 2, 2, 2, 1, 1, 1, 1]
    assert split_ranks(3, 8) == [1, 1, 1]
    assert split_ranks(16, 8) == [2] * 8
    layer = make(rank=3)
    assert layer.n_experts == 3 and layer.top_k == 2
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 3 * (6 + 5) + 3 * 6 == LoRAMoELinear.expected_param_count(6, 5, 3)
    assert make(rank=1).top_k == 1  # one expert: k capped at the number of experts


def test_initial_update_is_zero_and_router_random():
    layer = make()
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(6)
    assert 0 < layer.lora_router.abs().max().item() <= bound
    assert 0 < layer.lora_A.abs().max().item() <= bound
    x = torch.randn(3, 4, 6)
    assert torch.equal(layer(x), layer.base(x))


def test_hand_computed_forward_dense_and_top1():
    # Experts (rank 1 each): A_0 = [1, 0], B_0 = [2]; A_1 = [0, 1], B_1 = [3]; router = I, so the
    # logits equal x; alpha = rank = 2 gives scaling 1.
    for top_k, expected in [(0, 3.7310586), (1, 4.0)]:
        layer = make(in_f=2, out_f=1, rank=2, alpha=2.0, experts=2, top_k=top_k)
        with torch.no_grad():
            layer.lora_A.copy_(torch.eye(2))
            layer.lora_B.copy_(torch.tensor([[2.0, 3.0]]))
            layer.lora_router.copy_(torch.eye(2))
        x = torch.tensor([[2.0, 1.0]])
        got = (layer(x) - layer.base(x)).item()
        # dense: e/(e+1) * 2*2 + 1/(e+1) * 3*1 = 3.7310586; top-1: expert 0 alone, 2*2 = 4.
        assert got == pytest.approx(expected, abs=1e-5)


def test_routing_picks_exactly_top_k():
    layer = make(rank=8, top_k=3).train()
    randomise(nn.Sequential(layer))
    x = torch.randn(4, 7, 6)
    layer(x)
    stats = layer.router_stash.stats
    assert stats.mask.shape == (4, 7, 8)
    assert torch.equal(stats.mask.sum(-1), torch.full((4, 7), 3))
    # The chosen experts are the three largest probabilities of every token.
    threshold = stats.probs.topk(3, dim=-1).values[..., -1:]
    assert torch.equal(stats.mask, stats.probs >= threshold)
    assert torch.allclose(stats.weights.sum(-1), torch.ones(4, 7))
    assert torch.all(stats.weights[~stats.mask] == 0)
    dense = route(torch.randn(5, 8), 8)
    assert dense.mask.all() and torch.equal(dense.weights, dense.probs)


@pytest.mark.parametrize("top_k", [1, 2, 0])
def test_experts_combine_with_router_weights(top_k):
    layer = make(rank=12, top_k=top_k)  # uneven experts: ranks 2,2,2,2,1,1,1,1
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 4, 6)
    with torch.no_grad():
        got = layer(x) - layer.base(x)
        assert torch.allclose(got, reference_update(layer, x), atol=1e-5)
        assert torch.allclose(layer.adapter_forward(x), got, atol=1e-5)


def test_update_depends_on_the_input_so_no_merge():
    layer = make()
    with pytest.raises(NotImplementedError, match="router"):
        layer.delta_weight()


def test_lbc_matches_hand_computed_value():
    # 4 rank-1 experts; router columns are log-probabilities, so one-hot tokens route with
    # p = [0.4, 0.3, 0.2, 0.1] (token e1) and [0.1, 0.5, 0.3, 0.1] (token e2).
    layer = make(in_f=2, out_f=3, rank=4, alpha=4.0, experts=4)
    p1, p2 = [0.4, 0.3, 0.2, 0.1], [0.1, 0.5, 0.3, 0.1]
    with torch.no_grad():
        layer.lora_router.copy_(torch.log(torch.tensor([p1, p2])).T)
    model = nn.Sequential(layer).train()
    # Two samples of two tokens: Q_1 = 2 p1 = [.8, .6, .4, .2], Q_2 = 2 p2 = [.2, 1, .6, .2];
    # I = [.9, .9, 1.1, 1.1] (delta 0.1, task half second) gives Z = [.72 .54 .44 .22 .18 .9
    # .66 .22]: mean .485, unbiased variance .0709428571, cv^2 = .3015957; times beta 0.1.
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    model(x)
    loss = SPEC.extra_loss(model, layer.params)
    assert loss.item() == pytest.approx(0.03015957, abs=1e-6)
    # A 2-D input treats every row as a sample: Z rows are p * I, one token each.
    model(x[:, 0])
    z = torch.tensor([p1, p2]) * torch.tensor([0.9, 0.9, 1.1, 1.1])
    assert SPEC.extra_loss(model, layer.params).item() == pytest.approx(
        0.1 * (z.var() / z.mean() ** 2).item(), abs=1e-6
    )


def test_extra_loss_only_after_training_forwards_and_cleared():
    layer = make()
    model = nn.Sequential(layer)
    x = torch.randn(2, 5, 6)
    model.eval()
    with torch.no_grad():
        model(x)
    assert layer.router_stash.stats is None
    assert SPEC.extra_loss(model, layer.params) is None
    model.train()
    model(x)
    loss = SPEC.extra_loss(model, layer.params)
    assert loss is not None and loss.item() > 0
    assert layer.router_stash.stats is None  # collected and cleared
    assert SPEC.extra_loss(model, layer.params) is None
    model(x)
    model(x)  # a second forward replaces the first's statistics instead of accumulating
    assert SPEC.extra_loss(model, layer.params).item() == pytest.approx(loss.item(), rel=1e-6)
    model(x)
    assert SPEC.extra_loss(model, LoRAMoEParams(lbc_weight=0.0)) is None


def test_lbc_gradient_reaches_the_router_and_checkpointing_stashes_once():
    layer = make().train()
    model = nn.Sequential(layer)
    layer.checkpoint_adapter = True
    x = torch.randn(2, 5, 6)
    out = model(x)
    loss = SPEC.extra_loss(model, layer.params)
    (out.sum() + loss).backward()  # recomputation in backward must not re-stash
    assert layer.router_stash.stats is None
    assert layer.lora_router.grad is not None and layer.lora_router.grad.abs().sum() > 0
    model(x)  # the stash now holds autograd tensors; the model still deep-copies, stash empty
    assert copy.deepcopy(model)[0].router_stash.stats is None
    assert layer.router_stash.stats is not None


def test_layer_index_parsing():
    assert layer_index("bert.encoder.layer.3.attention.self.query") == 3
    assert layer_index("2") == 2
    assert layer_index("bert.pooler.dense") is None
    assert layer_index("h.12.attn.c_proj") == 12
