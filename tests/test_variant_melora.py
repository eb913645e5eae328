"""MeLoRA (Eqs. (14)-(15)): k mini-LoRAs of rank r on the block diagonal."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant
from lorabench.variants.melora import MeLoRALinear, MeLoRAParams, split_sizes


def test_registration_and_paper_defaults():
    spec = get_variant("melora")
    assert spec.family == "rank" and spec.merges and spec.peft_export is None
    # Paper: "The number of diagonal blocks is set to 2".
    assert build_params("melora", None) == MeLoRAParams(blocks=2)
    assert build_params("melora", {"blocks": 4}).blocks == 4
    with pytest.raises(InvalidVariantParams, match="blocks"):
        build_params("melora", {"blocks": 0})


def test_hand_computed_delta_and_forward():
    # in 4 -> two slices of 2, out 2 -> two slices of 1, r = 1, s = alpha / r = 2.
    layer = MeLoRALinear(nn.Linear(4, 2), rank=1, alpha=2.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 2.0, 3.0, -1.0]]))  # A^1 = [1, 2], A^2 = [3, -1]
        layer.lora_B.copy_(torch.tensor([[2.0], [-1.0]]))  # B^1 = [2], B^2 = [-1]
    # 2 * diag([2, 4], [-3, 1])
    expected = torch.tensor([[4.0, 8.0, 0.0, 0.0], [0.0, 0.0, -6.0, 2.0]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[-4.0, 1.0]]))


def test_initial_update_is_zero_with_per_block_kaiming_a():
    layer = MeLoRALinear(nn.Linear(400, 30), rank=4, alpha=8)
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(200)  # each mini A^i has fan-in in/k = 200
    assert 0.9 * bound < layer.lora_A.abs().max().item() <= bound


def test_overall_rank_is_k_times_r_at_loras_parameter_count():
    # The paper's setting: r = 8, k = 2 gives "an overall rank of 16".
    layer = MeLoRALinear(nn.Linear(32, 32), rank=8, alpha=16)
    randomise(nn.Sequential(layer))
    assert layer.effective_rank == 16
    with torch.no_grad():
        assert torch.linalg.matrix_rank(layer.delta_weight()).item() == 16
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 8 * (32 + 32) == MeLoRALinear.expected_param_count(32, 32, 8)


def test_uneven_split_keeps_the_block_structure():
    assert split_sizes(5, 2) == [3, 2] and split_sizes(7, 3) == [3, 2, 2]
    layer = MeLoRALinear(nn.Linear(5, 3), rank=2, alpha=2, params=MeLoRAParams(blocks=2))
    assert (layer.in_sizes, layer.out_sizes, layer.even) == ([3, 2], [2, 1], False)
    randomise(nn.Sequential(layer))
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:2, :3] = True
    mask[2:, 3:] = True
    with torch.no_grad():
        delta = layer.delta_weight()
    assert torch.count_nonzero(delta[~mask]) == 0 and bool((delta[mask] != 0).all())


def test_fewer_blocks_when_a_dimension_is_smaller():
    layer = MeLoRALinear(nn.Linear(6, 2), rank=2, alpha=2, params=MeLoRAParams(blocks=4))
    assert layer.num_blocks == 2 and layer.out_sizes == [1, 1]
    single = MeLoRALinear(nn.Linear(5, 1), rank=2, alpha=2)
    assert single.num_blocks == 1
    randomise(nn.Sequential(single))
    with torch.no_grad():
        plain = single.lora_B @ single.lora_A * single.scaling  # one block: plain LoRA
        assert torch.allclose(single.delta_weight(), plain)


def test_batched_path_equals_per_block_path():
    layer = MeLoRALinear(nn.Linear(12, 9), rank=2, alpha=4, params=MeLoRAParams(blocks=3))
    assert layer.even
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        batched = layer._forward_bmm(x)
        looped = layer._forward_blocks(x)
    assert batched.shape == (2, 5, 9)
    assert torch.allclose(batched, looped, atol=1e-6)
