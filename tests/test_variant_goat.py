"""GOAT: SVD-segment experts, residual base weight, GOAT scaling, top-k routing, Switch loss."""

import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import adapter_extra_state, build_params, get_variant, inject
from lorabench.variants.goat import GOATLinear, GOATParams, singular_indices

SPEC = get_variant("goat")


def make(in_f=16, out_f=12, rank=8, **params) -> tuple[GOATLinear, torch.Tensor]:
    torch.manual_seed(0)
    base = nn.Linear(in_f, out_f)
    original = base.weight.detach().clone()
    layer = GOATLinear(base, rank=rank, alpha=16.0, params=GOATParams(**params))
    return layer, original


def expert_update(layer: GOATLinear, i: int) -> torch.Tensor:
    a, b = layer.expert_factors(i)
    return layer.expert_scalings()[i] * (b @ a)


def test_defaults_follow_the_paper_and_official_code():
    assert build_params("goat", None) == GOATParams(
        experts=8, top_k=2, rho=10.0, eta=1.0, init_cof=None, aux_loss_coeff=1e-3
    )
    layer, _ = make(rank=8)
    assert layer.expert_ranks == [1] * 8 and layer.top_k == 2  # paper: 8 rank-1, 2 active
    assert layer.init_cof == pytest.approx(1 / 8)
    # GOAT's scaling sqrt(3 eta n_in / r_i) replaces alpha / r.
    assert layer.scaling == pytest.approx(math.sqrt(3 * 16 / 1))
    assert layer.lora_router.shape == (8, 16)
    assert GOATLinear.zero_init is False and GOATLinear.modifies_base is True
    assert SPEC.family == "moe" and not SPEC.merges and SPEC.extra_loss is not None


def test_singular_segments():
    # k // n = 2: expert i starts at 2i (official GOAT: disjoint segments over the spectrum).
    assert singular_indices(16, [1] * 8) == [[0], [2], [4], [6], [8], [10], [12], [14]]
    assert singular_indices(12, [2, 2, 1, 1]) == [[0, 1], [3, 4], [6], [9]]
    # Fewer singular values than experts: starts spread as i*k//n, wrapping modulo k.
    assert singular_indices(3, [1, 1, 1, 1]) == [[0], [0], [1], [2]]
    assert singular_indices(2, [2, 2]) == [[0, 1], [1, 0]]


def test_experts_are_svd_segments_scaled_by_rho():
    layer, original = make(in_f=16, out_f=20, rank=8)
    u, s, vh = torch.linalg.svd(original, full_matrices=False)
    for i in range(8):
        j = 2 * i  # k = 16 singular values over 8 experts: segments of 2, first of each taken
        # Eq. (132) with rho: s_i B_i A_i = U_i S_i V_i^T / rho.
        expected = s[j] * torch.outer(u[:, j], vh[j]) / 10.0
        assert torch.allclose(expert_update(layer, i), expected, atol=1e-5), i
        a, b = layer.expert_factors(i)
        root = math.sqrt(s[j].item() / (layer.scaling * 10.0))
        assert a.norm().item() == pytest.approx(root, rel=1e-4)
        assert b.norm().item() == pytest.approx(root, rel=1e-4)


@pytest.mark.parametrize("init_cof", [None, 1.0, 0.5])
def test_residual_plus_experts_reproduces_the_weight(init_cof):
    layer, original = make(rank=8, init_cof=init_cof)
    cof = layer.init_cof
    assert cof == (1 / 8 if init_cof is None else init_cof)
    assert not torch.allclose(layer.base.weight, original)
    rebuilt = layer.base.weight + cof * sum(expert_update(layer, i) for i in range(8))
    assert (rebuilt - original).abs().max().item() <= 1e-4


def test_initial_update_is_the_routing_mismatch():
    # Fresh GOAT is not the base model: W_res x + sum_i w_i s_i B_i A_i x
    # = W x + sum_i (w_i(x) - init_cof) s_i B_i A_i x.
    layer, original = make(rank=8)
    x = torch.randn(5, 16)
    with torch.no_grad():
        got = layer(x) - (x @ original.T + layer.base.bias)
        weights = layer.route(x).weights
        expected = sum(
            (weights[:, i : i + 1] - 1 / 8) * (x @ expert_update(layer, i).T) for i in range(8)
        )
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.abs().max().item() > 1e-4


def test_routing_picks_exactly_top_k_and_combines_with_weights():
    layer, _ = make(rank=8, top_k=2)
    randomise(nn.Sequential(layer))
    layer.train()
    x = torch.randn(3, 4, 16)
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    stats = layer.router_stash.stats
    assert torch.equal(stats.mask.sum(-1), torch.full((3, 4), 2))
    assert torch.equal(stats.mask, stats.probs >= stats.probs.topk(2, dim=-1).values[..., -1:])
    # Slow reference: each token, its two largest gates renormalised, experts summed.
    rows = []
    for token in x.reshape(-1, 16):
        probs = torch.softmax(layer.lora_router @ token, dim=-1)
        top = torch.argsort(probs, descending=True)[:2].tolist()
        norm = probs[top].sum()
        rows.append(sum(probs[i] / norm * (expert_update(layer, i) @ token) for i in top))
    assert torch.allclose(got, torch.stack(rows).reshape(3, 4, 12), atol=1e-4)
    with pytest.raises(NotImplementedError):
        layer.delta_weight()


def test_aux_loss_matches_hand_computed_value():
    # 4 rank-1 experts, router columns = log-probabilities: token e1 routes with
    # p = [.4, .3, .2, .1] (top-2 {0, 1}), token e2 with [.1, .5, .3, .1] (top-2 {1, 2}).
    layer, _ = make(in_f=2, out_f=3, rank=4, experts=4)
    with torch.no_grad():
        layer.lora_router.copy_(torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1],
                                                        [0.1, 0.5, 0.3, 0.1]])).T)  # fmt: skip
    model = nn.Sequential(layer).train()
    model(torch.eye(2))
    # Eq. (126): f = [1/2, 1, 1/2, 0], P = [.25, .4, .25, .1]; 4 * (.125 + .4 + .125) = 2.6.
    loss = SPEC.extra_loss(model, layer.params)
    assert loss.item() == pytest.approx(2.6e-3, abs=1e-7)
    model(torch.eye(2))
    assert SPEC.extra_loss(model, GOATParams(aux_loss_coeff=1.0)).item() == pytest.approx(2.6)


def test_extra_loss_none_without_training_forward():
    layer, _ = make()
    model = nn.Sequential(layer).eval()
    with torch.no_grad():
        model(torch.randn(4, 16))
    assert SPEC.extra_loss(model, layer.params) is None
    model.train()
    model(torch.randn(4, 16))
    assert SPEC.extra_loss(model, layer.params) is not None
    assert SPEC.extra_loss(model, layer.params) is None


def test_checkpoint_carries_the_residual_base_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    original = model[0].weight.detach().clone()
    inject(model, "goat", targets=("0",), rank=4, alpha=8)
    extra = adapter_extra_state(model)
    assert set(extra) == {"0.base.weight"}
    assert torch.equal(extra["0.base.weight"], model[0].base.weight)
    assert not torch.equal(extra["0.base.weight"], original)
    # Deterministic: a fresh injection of the same weights rebuilds the same residual.
    torch.manual_seed(0)
    again = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    inject(again, "goat", targets=("0",), rank=4, alpha=8)
    assert torch.equal(again[0].base.weight, model[0].base.weight)


def test_bf16_base_weight():
    torch.manual_seed(0)
    base = nn.Linear(16, 12).to(torch.bfloat16)
    original = base.weight.detach().float().clone()
    layer = GOATLinear(base, rank=8, alpha=16.0)
    # fp32 master factors on the bf16 base; the rewritten W is rounded once to bf16.
    assert (layer.lora_A.dtype, layer.base.weight.dtype) == (torch.float32, torch.bfloat16)
    rebuilt = layer.base.weight.float() + layer.init_cof * sum(
        expert_update(layer, i).float() for i in range(8)
    )
    assert (rebuilt - original).abs().max().item() <= 1e-2
