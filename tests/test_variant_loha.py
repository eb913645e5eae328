"""LoHA (Eq. (16)): hand-computed update, PEFT's init, the rank-r^2 factored path."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from torch import nn

from lorabench.variants import build_params, get_variant

LoHA = get_variant("loha").layer_cls


def set_factors(layer, w1_a, w1_b, w2_a, w2_b):
    with torch.no_grad():
        names = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        for name, value in zip(names, (w1_a, w1_b, w2_a, w2_b), strict=True):
            getattr(layer, name).copy_(torch.tensor(value))


@pytest.mark.parametrize("in_f", [2, 3], ids=["dense-path", "factored-path"])
def test_hand_computed_delta_and_forward(in_f):
    # r = 1, alpha = 2: s = 2. W1 = [[3, -1], [6, -2]], W2 = [[2, 1], [-2, -1]] (plus a zero
    # third column when in = 3); W1 (.) W2 = [[6, -1], [-12, 2]], times s = [[12, -2], [-24, 4]].
    layer = LoHA(nn.Linear(in_f, 2), rank=1, alpha=2.0)
    assert layer.factored == (in_f == 3)  # r^2 (in + out) < in * out: 5 < 6, but not 4 < 4
    pad = [0.0] * (in_f - 2)
    set_factors(layer, [[1.0], [2.0]], [[3.0, -1.0, *pad]], [[1.0], [-1.0]], [[2.0, 1.0, *pad]])
    expected = torch.tensor([[12.0, -2.0, *pad], [-24.0, 4.0, *pad]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, 2.0, *[5.0] * (in_f - 2)]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[8.0, -16.0]]), atol=1e-5)  # [12 - 4, -24 + 8]


def test_init_follows_peft_and_is_zero():
    layer = LoHA(nn.Linear(300, 40), rank=8, alpha=16)
    for name, fan_in in (("hada_w1_a", 8), ("hada_w1_b", 300), ("hada_w2_a", 8)):
        weight, bound = getattr(layer, name), 1 / math.sqrt(fan_in)  # kaiming-uniform(a=sqrt 5)
        assert weight.abs().max().item() <= bound
        assert weight.abs().max().item() > 0.9 * bound, name
    assert torch.count_nonzero(layer.hada_w2_b) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_init_draws_like_peft():
    peft = pytest.importorskip("peft")
    base = nn.Linear(12, 7)
    torch.manual_seed(5)
    ours = LoHA(base, rank=3, alpha=6)
    model = nn.Sequential(nn.Linear(12, 7))
    config = peft.LoHaConfig(r=3, alpha=6, target_modules=["0"])
    torch.manual_seed(5)
    theirs = peft.get_peft_model(model, config).base_model.model[0]
    for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        assert torch.equal(getattr(ours, name), getattr(theirs, name)["default"]), name


def test_defaults_scaling_and_param_count():
    assert dataclasses.fields(build_params("loha", None)) == ()
    layer = LoHA(nn.Linear(10, 6), rank=4, alpha=16)
    assert layer.scaling == 4.0  # Eq. (16): alpha / r
    assert sum(p.numel() for _, p in layer.adapter_named_parameters()) == 2 * 4 * 16
    assert LoHA.expected_param_count(10, 6, 4) == 128


def test_khatri_rao_factors_give_the_hadamard_product():
    layer = LoHA(nn.Linear(9, 7), rank=3, alpha=3)
    randomise(nn.Sequential(layer))
    left, right = layer.khatri_rao_factors()
    assert left.shape == (7, 9) and right.shape == (9, 9)
    hadamard = (layer.hada_w1_a @ layer.hada_w1_b) * (layer.hada_w2_a @ layer.hada_w2_b)
    assert torch.allclose(left @ right, hadamard, atol=1e-5)


def test_update_reaches_rank_r_squared():
    # Eq. (6): rank up to r^2, beyond the 2r of a LoRA with the same parameter count.
    layer = LoHA(nn.Linear(12, 12), rank=3, alpha=3).double()
    randomise(nn.Sequential(layer))
    assert torch.linalg.matrix_rank(layer.delta_weight()).item() == 9


@pytest.mark.parametrize("rank,factored", [(4, True), (5, False)])
def test_path_choice_and_both_paths_exact(rank, factored, monkeypatch):
    # in = 40, out = 30: r^2 * 70 < 1200 holds for r = 4 (1120), not for r = 5 (1750).
    layer = LoHA(nn.Linear(40, 30), rank=rank, alpha=8)
    assert layer.factored is factored
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 2, 40)
    with torch.no_grad():
        dense = layer.base(x) + F.linear(x, layer.delta_weight())
        if factored:
            # The efficient path never builds the (out, in) update.
            monkeypatch.setattr(LoHA, "delta_weight", lambda self: pytest.fail("dense update"))
        assert torch.allclose(layer(x), dense, atol=1e-5)


def test_dense_path_keeps_dropout_off_the_base():
    layer = LoHA(nn.Linear(3, 2), rank=3, alpha=3, dropout=0.5)
    assert not layer.factored
    randomise(nn.Sequential(layer))
    x = torch.randn(200, 3)
    layer.train()
    torch.manual_seed(0)
    with torch.no_grad():
        out = layer(x)
        # With the input zeroed by dropout the row must equal the base output exactly there.
        torch.manual_seed(0)
        kept = layer.dropout(x)
    dropped = (kept == 0).all(dim=-1)
    assert dropped.any()
    assert torch.allclose(out[dropped], layer.base(x)[dropped].detach(), atol=1e-6)
