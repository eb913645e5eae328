"""DeLoRA (Eqs. (69)-(70)): hand-computed update, zero start from kaiming A and B, the norm bound,
angle/strength decoupling, regenerated frozen copies and the rank-2r PEFT mapping."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import linear_with, randomise
from torch import nn

from lorabench.variants import (
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
    load_adapter_state_dict,
)
from lorabench.variants.delora import DeLoRAParams
from lorabench.variants.peft_export import to_peft

DeLoRA = get_variant("delora").layer_cls


def test_hand_computed_delta_and_forward():
    # W = [[3, 0], [4, 1]]: column norms w = [5, 1]. r = 1, lambda = 2.
    layer = DeLoRA(linear_with([[3.0, 0.0], [4.0, 1.0]]), rank=1, alpha=1.0)
    assert torch.equal(layer.delora_w_norm, torch.tensor([5.0, 1.0]))
    with torch.no_grad():
        layer.delora_lambda.fill_(2.0)
        layer.delora_A.copy_(torch.tensor([[3.0, 4.0]]))  # |a| = 5
        layer.delora_B.copy_(torch.tensor([[0.0], [2.0]]))  # |b| = 2
        layer.delora_A0.copy_(torch.tensor([[1.0, 0.0]]))
        layer.delora_B0.copy_(torch.tensor([[1.0], [0.0]]))
    # live:   (2 / 1) * [[0, 0], [6, 8]] / (5 * 2) = [[0, 0], [1.2, 1.6]], columns * [5, 1]
    #         = [[0, 0], [6, 1.6]];  frozen: 2 * [[1, 0], [0, 0]] * [5, 1] = [[10, 0], [0, 0]]
    expected = torch.tensor([[-10.0, 0.0], [6.0, 1.6]])
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-6)
    x = torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[-10.0, 7.6]]), atol=1e-5)


def test_paper_defaults():
    assert build_params("delora", None) == DeLoRAParams(delora_lambda=8.0, seed=0)
    layer = DeLoRA(nn.Linear(300, 40), rank=8, alpha=16)
    assert layer.delora_lambda.item() == 8.0 and layer.delora_lambda.requires_grad
    assert layer.scaling == 1.0  # lambda / r
    # ||W||: PEFT's per-input-column norm of the pretrained weight.
    assert torch.allclose(layer.delora_w_norm, layer.base.weight.norm(dim=0))
    assert DeLoRA.expected_param_count(300, 40, 8) == 8 * 340 + 1


def test_both_factors_kaiming_and_the_initial_update_exactly_zero():
    layer = DeLoRA(nn.Linear(300, 40), rank=8, alpha=16)
    for weight, fan_in in ((layer.delora_A, 300), (layer.delora_B, 8)):
        bound = 1 / math.sqrt(fan_in)  # kaiming-uniform(a = sqrt 5), for B too (paper's default)
        assert bound >= weight.abs().max().item() > 0.9 * bound
    assert torch.equal(layer.delora_A0, layer.delora_A)
    assert torch.equal(layer.delora_B0, layer.delora_B)
    # The live term alone is far from zero: the frozen copy is what cancels it.
    live = layer.normalized_update(layer.delora_A, layer.delora_B)
    assert live.norm() > 0.1
    assert torch.count_nonzero(layer.delta_weight()) == 0
    x = torch.randn(4, 300)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))


def test_norm_bound_eq70():
    torch.manual_seed(0)
    layer = DeLoRA(nn.Linear(30, 20), rank=6, alpha=1)
    randomise(nn.Sequential(layer), scale=3.0)
    lam = layer.delora_lambda.abs().item()
    live = layer.normalized_update(layer.delora_A, layer.delora_B)
    col_max = layer.delora_w_norm.max().item()
    spectral = torch.linalg.matrix_norm(layer.base.weight, ord=2).item()
    # Eq. (70): ||A D B||_2 <= lambda ||W||_2; with column norms even ||.||_F <= lambda max_j w_j.
    assert torch.linalg.matrix_norm(live, ord=2).item() <= lam * spectral
    assert live.norm().item() <= lam * col_max * (1 + 1e-6)
    assert layer.delta_weight().norm().item() <= 2 * lam * col_max * (1 + 1e-6)
    # All r components along one direction attain the Frobenius bound's structure exactly.
    with torch.no_grad():
        layer.delora_A.copy_(layer.delora_A[:1].expand(6, -1) * torch.arange(1.0, 7.0)[:, None])
        layer.delora_B.copy_(layer.delora_B[:, :1].expand(-1, 6) * 0.5)
    live = layer.normalized_update(layer.delora_A, layer.delora_B)
    a_hat = layer.delora_A[0] / layer.delora_A[0].norm()
    assert torch.allclose(live.norm(), lam * (a_hat * layer.delora_w_norm).norm(), rtol=1e-5)


def test_strength_and_angles_are_decoupled():
    layer = DeLoRA(nn.Linear(9, 7), rank=3, alpha=1)
    randomise(nn.Sequential(layer))
    before = layer.delta_weight().detach()
    with torch.no_grad():
        # Rescaling rows of A / columns of B by positive factors changes nothing (angles only)...
        layer.delora_A.mul_(torch.tensor([[2.0], [0.1], [7.0]]))
        layer.delora_B.mul_(torch.tensor([[3.0, 0.5, 11.0]]))
        assert torch.allclose(layer.delta_weight(), before, atol=1e-6)
        # ...while lambda scales the whole update linearly.
        layer.delora_lambda.mul_(-1.5)
        assert torch.allclose(layer.delta_weight(), -1.5 * before, atol=1e-6)


def test_lambda_moves_only_once_the_directions_do():
    layer = DeLoRA(nn.Linear(9, 7), rank=3, alpha=1)
    layer(torch.randn(5, 9)).pow(2).sum().backward()
    assert layer.delora_lambda.grad.abs().item() == 0.0
    assert layer.delora_A.grad.abs().sum() > 0 and layer.delora_B.grad.abs().sum() > 0


def test_frozen_copies_regenerate_from_seed_and_name():
    def build(name, seed=0):
        torch.manual_seed(len(name))  # the global RNG must not matter
        model = nn.Sequential()
        model.add_module(name, nn.Linear(6, 5))
        inject(model, "delora", targets=(name,), rank=2, alpha=1, params={"seed": seed})
        return model.get_submodule(name)

    first, again, other, reseeded = build("q"), build("q"), build("v"), build("q", seed=1)
    assert torch.equal(first.delora_A0, again.delora_A0)
    assert torch.equal(first.delora_B0, again.delora_B0)
    assert not torch.equal(first.delora_A0, other.delora_A0)
    assert not torch.equal(first.delora_A0, reseeded.delora_A0)
    # Frozen: neither parameters nor saved; only A, B and lambda are trainable state.
    assert {n for n, _ in first.adapter_named_parameters()} == {
        "delora_A", "delora_B", "delora_lambda"
    }  # fmt: skip
    assert not any("A0" in k or "w_norm" in k for k in first.state_dict())


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))


def test_native_round_trip_rebuilds_frozen_copies():
    trained, fresh = _mlp(), _mlp()
    inject(trained, "delora", targets=("0", "2"), rank=2, alpha=1)
    torch.manual_seed(123)
    inject(fresh, "delora", targets=("0", "2"), rank=2, alpha=1)
    randomise(trained)
    load_adapter_state_dict(fresh, adapter_state_dict(trained))
    x = torch.randn(4, 10)
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))


def test_efficient_path_never_forms_the_dense_update(monkeypatch):
    layer = DeLoRA(nn.Linear(40, 30), rank=4, alpha=1)
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        dense = layer.base(x) + F.linear(x, layer.delta_weight())
        monkeypatch.setattr(DeLoRA, "delta_weight", lambda self: pytest.fail("dense update"))
        monkeypatch.setattr(DeLoRA, "normalized_update", lambda *a: pytest.fail("dense update"))
        assert torch.allclose(layer(x), dense, atol=1e-5)


def test_peft_holds_it_as_a_rank_2r_delora():
    pytest.importorskip("peft")
    model, x = _mlp(), torch.randn(5, 10)
    inject(model, "delora", targets=("0", "2"), rank=3, alpha=1)
    randomise(model)
    with torch.no_grad():
        expected = model(x)
        theirs = to_peft(model, lambda: copy.deepcopy(_mlp()), "delora", rank=3, alpha=1,
                         dropout=0.0, params=DeLoRAParams())  # fmt: skip
        assert (theirs(x) - expected).abs().max().item() <= 1e-5
        for index in (0, 2):
            peft_layer = theirs.base_model.model[index]
            assert peft_layer.r["default"] == 6
            ours = model[index]
            assert peft_layer.delora_lambda["default"].item() == 2 * ours.delora_lambda.item()
            got = peft_layer.get_delta_weight("default")
            assert torch.allclose(got, ours.delta_weight(), atol=1e-6)
