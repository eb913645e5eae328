"""MoSLoRA: a trainable r x r mixer between LoRA's A and B (dW = s B M A)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant
from lorabench.variants.lora import LoRALinear
from lorabench.variants.moslora import MoSLoRALinear, MoSLoRAParams


def test_registration_and_defaults():
    spec = get_variant("moslora")
    assert spec.family == "moe" and spec.merges and spec.peft_export is None
    # Paper: "MoSLoRA: No extra hyperparameters"; the original code's mixer init is kaiming.
    assert build_params("moslora", None) == MoSLoRAParams(mixer_init="kaiming")
    with pytest.raises(InvalidVariantParams, match="mixer_init"):
        build_params("moslora", {"mixer_init": "zeros"})


def test_hand_computed_delta_and_forward():
    layer = MoSLoRALinear(nn.Linear(3, 2), rank=2, alpha=4.0)  # s = 2
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_mixer.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # B M = [[1, 5], [3, 1]];  B M A = [[1, 5, -3], [3, 1, 5]];  times s = 2.
    assert torch.allclose(layer.delta_weight(), torch.tensor([[2.0, 10.0, -6.0], [6.0, 2.0, 10.0]]))
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[-11.0, 9.0]]), atol=1e-6)


def test_initialisation_zero_update_kaiming_mixer():
    layer = MoSLoRALinear(nn.Linear(64, 32), rank=16, alpha=32)
    assert torch.count_nonzero(layer.lora_B) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0
    for weight, fan_in in ((layer.lora_A, 64), (layer.lora_mixer, 16)):
        bound = 1 / math.sqrt(fan_in)
        assert 0.9 * bound < weight.abs().max().item() <= bound


def test_orthogonal_mixer_option():
    layer = MoSLoRALinear(nn.Linear(8, 8), rank=4, alpha=8, params=MoSLoRAParams("orthogonal"))
    m = layer.lora_mixer
    assert torch.allclose(m @ m.T, torch.eye(4), atol=1e-5)
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_identity_mixer_reduces_to_lora():
    ours = MoSLoRALinear(nn.Linear(7, 5), rank=3, alpha=6)
    randomise(nn.Sequential(ours))
    lora = LoRALinear(nn.Linear(7, 5), rank=3, alpha=6)
    with torch.no_grad():
        ours.lora_mixer.copy_(torch.eye(3))
        lora.lora_A.copy_(ours.lora_A)
        lora.lora_B.copy_(ours.lora_B)
    assert torch.allclose(ours.delta_weight(), lora.delta_weight(), atol=1e-6)


def test_mixer_is_trained_and_counted():
    layer = MoSLoRALinear(nn.Linear(6, 5), rank=3, alpha=6)
    assert MoSLoRALinear.expected_param_count(6, 5, 3) == 3 * (6 + 5) + 9
    with torch.no_grad():
        layer.lora_B.normal_()
    layer(torch.randn(4, 6)).pow(2).sum().backward()
    assert layer.lora_mixer.grad is not None and layer.lora_mixer.grad.abs().sum() > 0
