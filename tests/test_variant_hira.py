"""HiRA: Eq. (17) by hand, zero init, rank beyond r, one matmul per forward, PEFT mapping."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from torch import nn

from lorabench.variants import build_params, get_variant, inject, merge_adapters
from lorabench.variants.base import PeftSettings
from lorabench.variants.hira import HiRALinear, HiRAParams

HAND_W = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
HAND_A = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]  # (r=2, in=3)
HAND_B = [[1.0, 2.0], [3.0, -1.0]]  # (out=2, r=2); B A = [[1, 2, 0], [3, -1, 7]]
# alpha = 4, s = 2: s B A = [[2, 4, 0], [6, -2, 14]]; W (.) s B A:
HAND_DELTA = [[2.0, 8.0, 0.0], [24.0, -10.0, 84.0]]


def hand_layer():
    base = nn.Linear(3, 2)
    with torch.no_grad():
        base.weight.copy_(torch.tensor(HAND_W))
        base.bias.copy_(torch.tensor([1.0, -1.0]))
    layer = HiRALinear(base, rank=2, alpha=4.0)
    with torch.no_grad():
        layer.hira_A.copy_(torch.tensor(HAND_A))
        layer.hira_B.copy_(torch.tensor(HAND_B))
    return layer


def test_hand_computed_delta_and_forward():
    layer = hand_layer()
    assert torch.allclose(layer.delta_weight(), torch.tensor(HAND_DELTA))
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        # W x + b = [1 - 2 + 1.5, 4 - 5 + 3] + [1, -1] = [1.5, 1];
        # Delta W x = [2 - 8 + 0, 24 + 10 + 42] = [-6, 76].
        assert torch.allclose(layer(x), torch.tensor([[-4.5, 77.0]]))


def test_init_is_a_zero_update_with_lora_style_a():
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(16, 5), rank=4, alpha=8.0)
    assert torch.count_nonzero(layer.hira_B) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0
    # kaiming_uniform(a=sqrt(5)) on (r, in): U(-1/sqrt(in), 1/sqrt(in)), and not degenerate.
    assert layer.hira_A.abs().max() <= 0.25 and layer.hira_A.std() > 0.05


def test_update_rank_exceeds_r_but_is_bounded_by_rank_w_times_r():
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(6, 6), rank=1, alpha=1.0)
    randomise(nn.Sequential(layer))
    with torch.no_grad():
        assert torch.linalg.matrix_rank(layer.delta_weight()) == 6  # Eq. (17): high rank, r = 1
        # Eq. (6): rank(W (.) B A) <= rank(W) * rank(B A); a rank-2 W caps it at 2.
        layer.base.weight.copy_(torch.randn(6, 2) @ torch.randn(2, 6))
        assert torch.linalg.matrix_rank(layer.delta_weight()) == 2


def test_zero_weights_get_no_update():
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(5, 4), rank=2, alpha=4.0)
    randomise(nn.Sequential(layer))
    with torch.no_grad():
        layer.base.weight[:, 1] = 0.0
        layer.base.weight[3, 4] = 0.0
        delta = layer.delta_weight()
    assert torch.count_nonzero(delta[:, 1]) == 0 and delta[3, 4] == 0
    assert torch.count_nonzero(delta) == 4 * 5 - 4 - 1


def count_linear_calls(monkeypatch):
    calls = []
    real = F.linear

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    return calls


def test_forward_is_one_matmul_with_the_effective_weight(monkeypatch):
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(5, 4), rank=2, alpha=4.0, dropout=0.3)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 5)
    with torch.no_grad():
        expected = layer.base(x) + F.linear(x, layer.delta_weight())
        calls = count_linear_calls(monkeypatch)
        out = layer.eval()(x)
    assert len(calls) == 1  # not base(x) plus a second matmul for the update
    assert torch.allclose(out, expected, atol=1e-5)


def test_train_mode_dropout_applies_to_the_update_only(monkeypatch):
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(5, 4), rank=2, alpha=4.0, dropout=0.5)
    randomise(nn.Sequential(layer))
    x = torch.randn(16, 5)
    calls = count_linear_calls(monkeypatch)
    torch.manual_seed(7)
    with torch.no_grad():
        out = layer.train()(x)
    assert len(calls) == 2
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)
    with torch.no_grad():
        expected = layer.base(x) + F.linear(dropped, layer.delta_weight())
    assert torch.allclose(out, expected, atol=1e-5)


def test_checkpointed_adapter_gives_the_same_gradients():
    torch.manual_seed(0)
    layer = HiRALinear(nn.Linear(5, 4), rank=2, alpha=4.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 5, requires_grad=True)
    params = [x, layer.hira_A, layer.hira_B]
    plain = torch.autograd.grad(layer(x).pow(2).sum(), params)
    layer.checkpoint_adapter = True
    checkpointed = torch.autograd.grad(layer(x).pow(2).sum(), params)
    for a, b in zip(plain, checkpointed, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_merge_keeps_the_delta_of_the_unmerged_weight():
    # Delta W depends on W, so unmerge must not recompute it from the merged weight.
    layer = hand_layer()
    model = nn.Sequential(layer)
    merge_adapters(model)
    assert torch.allclose(layer.base.weight, torch.tensor(HAND_W) + torch.tensor(HAND_DELTA))
    assert torch.allclose(layer.merged_delta, torch.tensor(HAND_DELTA))
    assert not any("merged_delta" in k for k in model.state_dict())
    layer.unmerge()
    assert torch.allclose(layer.base.weight, torch.tensor(HAND_W))
    assert layer.merged_delta is None


def test_defaults_registry_and_param_count():
    spec = get_variant("hira")
    assert spec.family == "rank" and spec.merges and spec.peft
    assert dataclasses.fields(HiRAParams) == ()  # paper: "HiRA: No extra hyperparameters"
    assert build_params("hira", None) == HiRAParams()
    assert HiRALinear(nn.Linear(4, 4), rank=8, alpha=16).scaling == 2.0  # Eq. (17): alpha / r
    model = nn.Sequential(nn.Linear(6, 3))
    assert inject(model, "hira", targets=("0",), rank=2, alpha=4).adapter_params == 2 * (6 + 3)


def test_peft_mapping_folds_the_scaling_into_b():
    peft = pytest.importorskip("peft")
    layer = hand_layer()
    settings = PeftSettings(["0"], 2, 4.0, 0.0, HiRAParams(), [])
    config = get_variant("hira").peft_export.make_config(settings)
    assert isinstance(config, peft.HiraConfig) and config.r == 2
    base = nn.Sequential(nn.Linear(3, 2))
    base.load_state_dict({"0." + k: v for k, v in layer.base.state_dict().items()})
    theirs = peft.get_peft_model(base, config).base_model.model[0]
    get_variant("hira").peft_export.copy_weights(layer, theirs)
    with torch.no_grad():
        # PEFT has no alpha / r: hira_B holds s B, so its W (.) B A equals our Eq. (17) delta.
        assert torch.allclose(theirs.hira_B["default"], 2.0 * torch.tensor(HAND_B))
        their_delta = theirs.get_base_layer().weight * theirs.get_delta_weight("default")
        assert torch.allclose(their_delta, torch.tensor(HAND_DELTA))
