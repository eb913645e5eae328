"""LoRAN: LoRA output through Sinter(z) = z + amp * sin(freq * z) * z (paper ref [74])."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant, inject
from lorabench.variants.loran import LoRANLinear, LoRANParams, sinter


def hand_layer(params: LoRANParams | None = None) -> LoRANLinear:
    layer = LoRANLinear(nn.Linear(2, 2), rank=1, alpha=1.0, params=params)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0], [2.0]]))
    return layer


def test_hand_computed_forward_default_sinter():
    layer = hand_layer()
    x = torch.tensor([[0.5, 9.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    # z = B A x = [0.5, 1.0]; Sinter(z) = z + sin(z) z; s = alpha / r = 1.
    # [0.5 + 0.5 sin 0.5, 1 + sin 1] = [0.7397128, 1.8414710]
    assert torch.allclose(got, torch.tensor([[0.7397128, 1.8414710]]), atol=1e-6)


def test_hand_computed_forward_custom_amp_freq_and_scaling():
    layer = hand_layer(LoRANParams(amp=0.5, freq=2.0))
    layer.alpha = 3.0  # s = alpha / r = 3
    x = torch.tensor([[0.5, -4.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    # z = [0.5, 1.0]: z + 0.5 sin(2z) z = [0.5 + 0.25 sin 1, 1 + 0.5 sin 2] = [0.7103677, 1.4546487]
    assert torch.allclose(got, 3.0 * torch.tensor([[0.7103677, 1.4546487]]), atol=1e-6)


def test_defaults_match_lorafactory():
    params = build_params("loran", None)
    assert params == LoRANParams(amp=1.0, freq=1.0)
    assert build_params("loran", {"amp": 0.25}).amp == 0.25
    with pytest.raises(InvalidVariantParams):
        build_params("loran", {"amp": "big"})
    spec = get_variant("loran")
    assert spec.family == "optimization" and not spec.merges and spec.peft_export is None


def test_sinter_function():
    z = torch.tensor([0.0, 1.0, -2.0, torch.pi])
    out = sinter(z, amp=1.0, freq=1.0)
    # sin(-2) * (-2) = +1.8185949; at pi the sine term vanishes.
    expected = torch.tensor([0.0, 1.0 + 0.8414710, -2.0 + 2.0 * 0.9092974, torch.pi])
    assert torch.allclose(out, expected, atol=1e-6)
    # amp = 0 is the identity: LoRAN collapses to LoRA.
    assert torch.equal(sinter(z, amp=0.0, freq=5.0), z)


def test_init_is_lora_init_and_identity():
    torch.manual_seed(0)
    layer = LoRANLinear(nn.Linear(40, 6), rank=4, alpha=8)
    assert torch.count_nonzero(layer.lora_B) == 0
    assert 0 < layer.lora_A.abs().max().item() <= 1 / 40**0.5
    assert layer.scaling == 2.0
    x = torch.randn(3, 40)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))


def test_amp_zero_equals_lora():
    torch.manual_seed(0)
    base = nn.Linear(7, 5)
    loran = LoRANLinear(base, rank=3, alpha=6, params=LoRANParams(amp=0.0))
    lora = get_variant("lora").layer_cls(nn.Linear(7, 5), rank=3, alpha=6)
    lora.base.load_state_dict(base.state_dict())
    randomise(nn.Sequential(loran))
    with torch.no_grad():
        lora.lora_A.copy_(loran.lora_A)
        lora.lora_B.copy_(loran.lora_B)
    x = torch.randn(4, 7)
    with torch.no_grad():
        assert torch.allclose(loran(x), lora(x), atol=1e-6)


def test_update_is_nonlinear_and_not_mergeable():
    torch.manual_seed(0)
    layer = LoRANLinear(nn.Linear(6, 4), rank=2, alpha=4)
    randomise(nn.Sequential(layer))
    x = torch.randn(5, 6)
    with torch.no_grad():
        one = layer.adapter_forward(x)
        two = layer.adapter_forward(2 * x)
    assert not torch.allclose(two, 2 * one, atol=1e-3)
    with pytest.raises(NotImplementedError):
        layer.delta_weight()


def test_param_count_equals_lora_table2():
    # Table II: LORAN 20.97M = LoRA's count on LLaMA-3-8B (r = 8, q k v o gate up down x 32).
    shapes = [(4096, 4096), (4096, 1024), (4096, 1024), (4096, 4096)]
    shapes += [(4096, 14336), (4096, 14336), (14336, 4096)]
    total = 32 * sum(LoRANLinear.expected_param_count(i, o, 8) for i, o in shapes)
    assert round(total / 1e6, 2) == 20.97
    model = nn.Sequential(nn.Linear(6, 5))
    report = inject(model, "loran", targets=("0",), rank=2, alpha=4)
    assert report.adapter_params == 2 * (6 + 5)


def test_sinter_backward_matches_finite_differences():
    from lorabench.variants.loran import sinter

    z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sinter(t, 0.7, 1.3), (z,))
