"""OLoRA (Eq. (95)): QR of W, orthonormal B = Q[:, :r], upper-trapezoidal A = R[:r], residual
base W - s * B A; identical to PEFT's init_lora_weights="olora"."""

import pytest
import torch
from helpers import linear_with
from torch import nn

from lorabench.variants import build_params, get_variant
from lorabench.variants.base import NoParams

SPEC = get_variant("olora")
OLoRA = SPEC.layer_cls


def peft_init(weight, rank, alpha):
    peft = pytest.importorskip("peft")
    model = nn.Sequential(linear_with(weight))
    config = peft.LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=["0"], init_lora_weights="olora"
    )
    layer = peft.get_peft_model(model, config).base_model.model[0]
    return (
        layer.lora_A["default"].weight.detach(),
        layer.lora_B["default"].weight.detach(),
        layer.base_layer.weight.detach(),
    )


def test_defaults_and_flags():
    assert build_params("olora", None) == NoParams()
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft is True
    assert OLoRA.zero_init is False and OLoRA.modifies_base is True
    assert OLoRA.expected_param_count(5, 6, 2) == 22


def test_hand_computed_init():
    # W = [[3, 1], [4, 2]]: q1 = [0.6, 0.8] (up to sign), R[0] = q1^T W = [5, 2.2].
    # r = 1, alpha = 1 -> s = 1: s * B A = q1 q1^T W = [[3, 1.32], [4, 1.76]],
    # residual = [[0, -0.32], [0, 0.24]].
    layer = OLoRA(linear_with(torch.tensor([[3.0, 1.0], [4.0, 2.0]])), rank=1, alpha=1)
    sign = torch.sign(layer.lora_B[0, 0]).item()
    assert torch.allclose(layer.lora_B * sign, torch.tensor([[0.6], [0.8]]), atol=1e-6)
    assert torch.allclose(layer.lora_A * sign, torch.tensor([[5.0, 2.2]]), atol=1e-5)
    assert torch.allclose(layer.delta_weight(), torch.tensor([[3.0, 1.32], [4.0, 1.76]]), atol=1e-5)
    assert torch.allclose(layer.base.weight, torch.tensor([[0.0, -0.32], [0.0, 0.24]]), atol=1e-5)
    x = torch.tensor([[1.0, -1.0]])
    with torch.no_grad():
        # base: [0.32, -0.24]; W x = [2, 2].
        assert torch.allclose(layer.base(x), torch.tensor([[0.32, -0.24]]), atol=1e-5)
        assert torch.allclose(layer(x), torch.tensor([[2.0, 2.0]]), atol=1e-5)


def test_orthonormal_b_triangular_a_residual_reproduces_w():
    torch.manual_seed(0)
    weight = torch.randn(40, 24) / 5
    layer = OLoRA(linear_with(weight, bias=True), rank=8, alpha=16)  # s = 2
    # The scaling is NOT folded into the factors (PEFT): B keeps orthonormal columns.
    assert torch.allclose(layer.lora_B.T @ layer.lora_B, torch.eye(8), atol=1e-5)
    assert torch.equal(layer.lora_A, torch.triu(layer.lora_A))
    q, r = torch.linalg.qr(weight)
    assert torch.allclose(layer.delta_weight(), 2 * q[:, :8] @ r[:8], atol=1e-5)
    assert (layer.base.weight + layer.delta_weight() - weight).abs().max().item() <= 1e-4
    x = torch.randn(3, 24)
    with torch.no_grad():
        assert (layer(x) - (x @ weight.T + layer.base.bias)).abs().max().item() <= 1e-4


def test_init_matches_peft_olora_on_a_minilm_weight(minilm):
    weight = minilm.bert.encoder.layer[1].attention.self.value.weight.detach().clone()
    lora_a, lora_b, residual = peft_init(weight, rank=8, alpha=16)
    ours = OLoRA(linear_with(weight), rank=8, alpha=16)
    # Householder QR fixes the signs, so no sign ambiguity is left: same factors, same residual.
    assert (ours.lora_A - lora_a).abs().max().item() <= 1e-6
    assert (ours.lora_B - lora_b).abs().max().item() <= 1e-6
    assert (ours.base.weight - residual).abs().max().item() <= 1e-6


@pytest.mark.parametrize("shape", [(6, 14), (14, 6)])
def test_init_matches_peft_for_wide_and_tall_weights(shape):
    torch.manual_seed(1)
    weight = torch.randn(*shape)
    lora_a, lora_b, residual = peft_init(weight, rank=3, alpha=4)
    ours = OLoRA(linear_with(weight), rank=3, alpha=4)
    assert torch.allclose(ours.lora_A, lora_a, atol=1e-6)
    assert torch.allclose(ours.lora_B, lora_b, atol=1e-6)
    assert torch.allclose(ours.base.weight, residual, atol=1e-5)


def test_rank_above_min_dim_moves_all_of_w():
    torch.manual_seed(2)
    weight = torch.randn(2, 5)
    layer = OLoRA(linear_with(weight), rank=4, alpha=4)
    assert layer.base.weight.abs().max().item() <= 1e-5
    assert (layer.delta_weight() - weight).abs().max().item() <= 1e-5
    assert torch.count_nonzero(layer.lora_B[:, 2:]) == 0
    assert torch.count_nonzero(layer.lora_A[2:]) == 10
