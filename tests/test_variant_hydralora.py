"""HydraLoRA: one shared A, N routed B heads (Eq. (133))."""

import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import build_params, get_variant
from lorabench.variants.hydralora import HydraLoRALinear, HydraLoRAParams

SPEC = get_variant("hydralora")


def make(in_f=6, out_f=5, rank=4, alpha=8.0, **params) -> HydraLoRALinear:
    torch.manual_seed(0)
    return HydraLoRALinear(nn.Linear(in_f, out_f), rank=rank, alpha=alpha,
                           params=HydraLoRAParams(**params))  # fmt: skip


def test_defaults_structure_and_count():
    assert build_params("hydralora", None) == HydraLoRAParams(heads=4)
    layer = make(rank=4)
    # Asymmetric: one A (r, in) for all heads, N heads B_i (out, r), router (N, in).
    assert layer.lora_A.shape == (4, 6)
    assert layer.lora_B.shape == (5, 16) and layer.head(3).shape == (5, 4)
    assert layer.lora_router.shape == (4, 6)
    assert layer.scaling == 2.0
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 4 * 6 + 4 * 4 * 5 + 4 * 6 == HydraLoRALinear.expected_param_count(6, 5, 4)
    assert SPEC.family == "moe" and not SPEC.merges and SPEC.extra_loss is None


def test_initial_update_is_zero():
    layer = make()
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(6)
    assert 0 < layer.lora_A.abs().max().item() <= bound
    assert 0 < layer.lora_router.abs().max().item() <= bound
    x = torch.randn(2, 3, 6)
    assert torch.equal(layer(x), layer.base(x))


def test_hand_computed_forward():
    # r = 1, 2 heads: A = [1, 2], B_1 = [1], B_2 = [-2]; router logits log(.75), log(.25) for any
    # x (second input coordinate 1, first 0 weight). x = [1, 1]: A x = 3;
    # (.75 * 1 + .25 * -2) * 3 = 0.75, times s = alpha / r = 2 -> 1.5.
    layer = make(in_f=2, out_f=1, rank=1, alpha=2.0, heads=2)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 2.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, -2.0]]))
        layer.lora_router.copy_(torch.tensor([[0.0, math.log(0.75)], [0.0, math.log(0.25)]]))
    x = torch.tensor([[1.0, 1.0]])
    assert (layer(x) - layer.base(x)).item() == pytest.approx(1.5, abs=1e-6)


def test_heads_combine_with_router_weights():
    layer = make(rank=3, heads=5)
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        got = layer(x) - layer.base(x)
        rows = []
        for token in x.reshape(-1, 6):
            w = torch.softmax(layer.lora_router @ token, dim=-1)
            mixed = sum(w[i] * layer.head(i) for i in range(5))  # Eq. (133): sum_i w_i B_i
            rows.append(layer.scaling * mixed @ (layer.lora_A @ token))
        assert torch.allclose(got, torch.stack(rows).reshape(2, 4, 5), atol=1e-5)
        assert torch.allclose(layer.adapter_forward(x), got, atol=1e-5)
    with pytest.raises(NotImplementedError):
        layer.delta_weight()


def test_router_gets_gradients_and_dropout_spares_the_router():
    layer = HydraLoRALinear(nn.Linear(6, 5), rank=2, alpha=4.0, dropout=0.5)
    randomise(nn.Sequential(layer))
    layer.train()
    x = torch.randn(8, 6)
    torch.manual_seed(1)
    layer(x).sum().backward()
    assert layer.lora_router.grad.abs().sum() > 0
    # Dropping out x for A only: the router's weights equal those of the clean input.
    with torch.no_grad():
        torch.manual_seed(1)
        dropped = layer.dropout(x)
        expected = layer.base(x) + layer.mix_heads(dropped, layer.head_weights(x))
        torch.manual_seed(1)
        assert torch.allclose(layer(x), expected, atol=1e-6)
