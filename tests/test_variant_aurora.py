"""Aurora: LoRA with the adaptive nonlinear layer of Eqs. (86)-(87), (136)-(137)."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant
from lorabench.variants.aurora import AuroraLinear, AuroraParams, bspline_bases, spline_knots


def test_defaults_and_knots():
    params = build_params("aurora", None)
    assert params == AuroraParams(
        grid_size=5, spline_order=3, grid_min=-1.0, grid_max=1.0, spline_init_scale=0.1
    )
    assert params.n_bases == 8
    # h = 0.4; 3 extra knots on each side of [-1, 1].
    expected = [-2.2, -1.8, -1.4, -1.0, -0.6, -0.2, 0.2, 0.6, 1.0, 1.4, 1.8, 2.2]
    assert torch.allclose(spline_knots(params), torch.tensor(expected, dtype=torch.float64))
    spec = get_variant("aurora")
    assert spec.family == "optimization" and not spec.merges and spec.peft_export is None


@pytest.mark.parametrize(
    "bad", [{"grid_size": 0}, {"spline_order": -1}, {"grid_min": 1.0}, {"spline_init_scale": -1.0}]
)
def test_invalid_params_rejected(bad):
    with pytest.raises(InvalidVariantParams):
        build_params("aurora", bad)


def test_bspline_bases_hand_values():
    knots = spline_knots(AuroraParams()).float()
    # Uniform cubic pieces at local u: (1-u)^3/6, (3u^3-6u^2+4)/6, (-3u^3+3u^2+3u+1)/6, u^3/6.
    # h = 0.5 lies in [0.2, 0.6) (interval 6), u = 0.75 -> bases 3..6 are non-zero.
    got = bspline_bases(torch.tensor([0.5]), knots, 3)[0]
    expected = torch.zeros(8)
    expected[3:7] = torch.tensor([0.0026042, 0.3151042, 0.6119792, 0.0703125])
    assert torch.allclose(got, expected, atol=1e-6)
    # h = 0 in [-0.2, 0.2) (interval 5), u = 0.5 -> bases 2..5.
    got = bspline_bases(torch.tensor([0.0]), knots, 3)[0]
    expected = torch.zeros(8)
    expected[2:6] = torch.tensor([0.0208333, 0.4791667, 0.4791667, 0.0208333])
    assert torch.allclose(got, expected, atol=1e-6)


def test_bspline_partition_of_unity_and_support():
    knots = spline_knots(AuroraParams()).float()
    inside = torch.linspace(-1.0, 0.999, 57)
    assert torch.allclose(bspline_bases(inside, knots, 3).sum(-1), torch.ones(57), atol=1e-5)
    outside = torch.tensor([-2.3, 2.2, 3.0, -10.0])
    assert torch.count_nonzero(bspline_bases(outside, knots, 3)) == 0


def hand_layer() -> AuroraLinear:
    layer = AuroraLinear(nn.Linear(2, 2), rank=1, alpha=2.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0]]))
        layer.aurora_C.copy_(torch.tensor([[2.0]]))
        layer.aurora_spline.copy_(torch.tensor([[0.0, 0, 0, 0, 1, 2, 0, 0]]))
        layer.lora_B.copy_(torch.tensor([[1.0], [-2.0]]))
    return layer


def test_hand_computed_forward():
    layer = hand_layer()
    x = torch.tensor([[0.5, 3.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    # h = A x = 0.5. Fixed path: tanh(2 tanh 0.5) = tanh(0.9242343) = 0.7278944.
    # Spline path: 1 * B_4(0.5) + 2 * B_5(0.5) = 0.3151042 + 2 * 0.6119792 = 1.5390625.
    # Eq. (87): s = alpha / r = 2; times B = [1, -2].
    anl = 0.7278944 + 1.5390625
    assert torch.allclose(got, torch.tensor([[2 * anl, -4 * anl]]), atol=1e-5)


def test_hand_computed_fixed_path_only_outside_grid():
    layer = hand_layer()
    x = torch.tensor([[3.0, 0.0]])  # h = 3 lies outside the knot span: no spline term
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    # tanh(2 tanh 3) = tanh(1.9901095) = 0.9633221
    assert torch.allclose(got, torch.tensor([[2 * 0.9633221, -4 * 0.9633221]]), atol=1e-5)


def test_initial_update_is_zero_and_init_ranges():
    torch.manual_seed(0)
    layer = AuroraLinear(nn.Linear(64, 8), rank=4, alpha=8)
    assert torch.count_nonzero(layer.lora_B) == 0
    assert 0 < layer.lora_A.abs().max().item() <= 1 / 8  # 1 / sqrt(64)
    assert torch.count_nonzero(layer.aurora_C) == 16
    spline = layer.aurora_spline
    assert spline.shape == (4, 8) and 0 < spline.abs().max().item() <= 0.1
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))


def test_not_mergeable_and_nonlinear():
    torch.manual_seed(0)
    layer = AuroraLinear(nn.Linear(6, 4), rank=2, alpha=4)
    randomise(nn.Sequential(layer))
    x = torch.randn(5, 6)
    with torch.no_grad():
        one, two = layer.adapter_forward(x), layer.adapter_forward(2 * x)
    assert not torch.allclose(two, 2 * one, atol=1e-3)
    with pytest.raises(NotImplementedError):
        layer.delta_weight()


def test_spline_weights_learn():
    torch.manual_seed(0)
    layer = AuroraLinear(nn.Linear(6, 4), rank=2, alpha=4)
    randomise(nn.Sequential(layer))
    layer(torch.randn(8, 6) * 0.3).pow(2).sum().backward()
    assert layer.aurora_spline.grad.abs().sum() > 0
    assert layer.aurora_C.grad.abs().sum() > 0


def test_param_count_matches_table2():
    # Table II: AURORA 21.00M vs LoRA 20.97M on LLaMA-3-8B (r = 8, 7 modules x 32 layers):
    # r^2 + r (G + k) = 128 extra per module.
    shapes = [(4096, 4096), (4096, 1024), (4096, 1024), (4096, 4096)]
    shapes += [(4096, 14336), (4096, 14336), (14336, 4096)]
    total = 32 * sum(AuroraLinear.expected_param_count(i, o, 8) for i, o in shapes)
    assert total - 20_971_520 == 224 * 128
    assert round(total / 1e6, 2) == 21.00
    custom = AuroraParams(grid_size=3, spline_order=2)
    layer = AuroraLinear(nn.Linear(5, 7), rank=3, alpha=3, params=custom)
    assert layer.aurora_spline.shape == (3, 5)
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == AuroraLinear.expected_param_count(5, 7, 3, custom) == 36 + 9 + 15
