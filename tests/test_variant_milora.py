"""MiLoRA (Eqs. (93)-(94)): the minor singular triplets move to the adapter (sqrt(S) each way),
the principal spectrum stays in the residual base, and base + adapter reproduces W."""

import pytest
import torch
from helpers import linear_with
from torch import nn

from lorabench.variants import build_params, get_variant
from lorabench.variants.base import NoParams

SPEC = get_variant("milora")
MiLoRA = SPEC.layer_cls
PiSSA = get_variant("pissa").layer_cls


def test_defaults_and_flags():
    # The paper lists no MiLoRA hyperparameter; MiLoRA's own code takes an exact SVD.
    assert build_params("milora", None) == NoParams()
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft_export is None
    assert MiLoRA.zero_init is False and MiLoRA.modifies_base is True
    layer = MiLoRA(nn.Linear(5, 6), rank=2, alpha=4)
    assert layer.scaling == 2.0
    assert MiLoRA.expected_param_count(5, 6, 2) == 22


def test_hand_computed_init():
    # W = [[0, 4, 0], [2, 0, 0]]: the minor triplet is sigma = 2, u = e2, v = e1.
    # r = 1, alpha = 2 -> s = 2; S / s = 1, so A = e1^T and B = e2 (up to sign),
    # s * B A = [[0, 0, 0], [2, 0, 0]] and the residual keeps the principal [[0, 4, 0], [0, 0, 0]].
    layer = MiLoRA(linear_with(torch.tensor([[0.0, 4.0, 0.0], [2.0, 0.0, 0.0]])), rank=1, alpha=2)
    sign = torch.sign(layer.lora_A[0, 0]).item()
    assert torch.allclose(layer.lora_A * sign, torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(layer.lora_B * sign, torch.tensor([[0.0], [1.0]]), atol=1e-6)
    assert torch.allclose(layer.base.weight, torch.tensor([[0.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    with torch.no_grad():
        # base: [8, 0]; adapter: [0, 2]; together W x = [8, 2].
        assert torch.allclose(layer.base(x), torch.tensor([[8.0, 0.0]]), atol=1e-5)
        assert torch.allclose(layer(x), torch.tensor([[8.0, 2.0]]), atol=1e-5)


def test_residual_plus_adapter_reproduces_w_and_keeps_the_principal_spectrum():
    torch.manual_seed(0)
    weight = torch.randn(40, 24) / 5
    layer = MiLoRA(linear_with(weight, bias=True), rank=6, alpha=12)  # s = 2
    assert (layer.base.weight + layer.delta_weight() - weight).abs().max().item() <= 1e-4
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    minor = u[:, -6:] @ torch.diag(s[-6:]) @ vh[-6:]
    assert (layer.delta_weight() - minor).abs().max().item() <= 1e-4
    # The base keeps W's 18 largest singular values (and loses the 6 smallest).
    svals = torch.linalg.svdvals(layer.base.weight)
    assert torch.allclose(svals[:18], s[:18], atol=1e-4)
    assert svals[18:].abs().max().item() <= 1e-4
    gram = torch.diag(s[-6:] / 2)  # A A^T = B^T B = diag(S_minor / s)
    assert torch.allclose(layer.lora_A @ layer.lora_A.T, gram, atol=1e-5)
    assert torch.allclose(layer.lora_B.T @ layer.lora_B, gram, atol=1e-5)
    x = torch.randn(3, 24)
    with torch.no_grad():
        assert (layer(x) - (x @ weight.T + layer.base.bias)).abs().max().item() <= 1e-4


def test_minor_and_principal_parts_are_complementary():
    torch.manual_seed(1)
    weight = torch.randn(10, 8)
    options = {"rank": 4, "alpha": 8.0, "params": build_params("pissa", {"svd_iters": 0})}
    principal = PiSSA(linear_with(weight), **options).delta_weight()
    minor = MiLoRA(linear_with(weight), rank=4, alpha=8.0).delta_weight()
    # 4 + 4 = min(10, 8) triplets: PiSSA's part plus MiLoRA's part is all of W.
    assert (principal + minor - weight).abs().max().item() <= 1e-4
    assert torch.linalg.matrix_rank(minor).item() == 4


def test_rank_above_min_dim_moves_all_of_w_and_pads_with_lora_init():
    torch.manual_seed(2)
    weight = torch.randn(4, 2)
    layer = MiLoRA(linear_with(weight), rank=3, alpha=3)
    assert layer.base.weight.abs().max().item() <= 1e-5
    assert (layer.delta_weight() - weight).abs().max().item() <= 1e-5
    assert torch.count_nonzero(layer.lora_B[:, 2:]) == 0
    assert torch.count_nonzero(layer.lora_A[2:]) == 2


@pytest.mark.parametrize("rank", [1, 4])
def test_init_is_deterministic(rank):
    weight = torch.randn(12, 6)
    first, second = (MiLoRA(linear_with(weight), rank=rank, alpha=2) for _ in range(2))
    assert torch.equal(first.lora_A, second.lora_A) and torch.equal(first.lora_B, second.lora_B)
    assert torch.equal(first.base.weight, second.base.weight)
