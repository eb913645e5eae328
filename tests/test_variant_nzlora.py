"""NZLoRA (Eq. (89)): A and B both uniform with gamma_A = gamma_B = 16, no residual (the base is
left untouched), so the fresh layer is its base plus a non-zero update."""

import math

import pytest
import torch
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant, inject
from lorabench.variants.nzlora import NZLoRAParams

SPEC = get_variant("nzlora")
NZLoRA = SPEC.layer_cls


def test_paper_defaults_and_flags():
    assert build_params("nzlora", None) == NZLoRAParams(gamma_a=16.0, gamma_b=16.0)
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft_export is None
    assert NZLoRA.zero_init is False and NZLoRA.modifies_base is False
    assert NZLoRA.expected_param_count(5, 6, 2) == 22
    for bad in ({"gamma_a": 0.0}, {"gamma_b": -1.0}):
        with pytest.raises(InvalidVariantParams, match="gamma"):
            build_params("nzlora", bad)


@pytest.mark.parametrize("out_f", [30, 900])
def test_init_bounds_and_uniform_distribution(out_f):
    torch.manual_seed(0)
    layer = NZLoRA(nn.Linear(400, out_f), rank=16, alpha=32)
    # m = in_features for both factors: bound sqrt(16 / 400) = 0.2, whatever out_features is.
    assert layer.init_bounds() == pytest.approx((0.2, 0.2))
    for factor in (layer.lora_A, layer.lora_B):
        values = factor.detach().flatten()
        assert values.abs().max().item() <= 0.2
        assert values.abs().max().item() > 0.19
        # U(-b, b): mean 0, variance b^2 / 3, half the mass inside (-b/2, b/2).
        assert abs(values.mean().item()) < 0.01
        assert values.var().item() == pytest.approx(0.04 / 3, rel=0.1)
        assert (values.abs() < 0.1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_gammas_are_configurable_and_gamma_one_is_eq88():
    torch.manual_seed(1)
    params = build_params("nzlora", {"gamma_a": 1.0, "gamma_b": 4.0})
    layer = NZLoRA(nn.Linear(100, 50), rank=8, alpha=8, params=params)
    assert layer.init_bounds() == pytest.approx((0.1, 0.2))  # 1/sqrt(100), sqrt(4/100)
    assert 0.09 < layer.lora_A.abs().max().item() <= 0.1
    assert 0.18 < layer.lora_B.abs().max().item() <= 0.2


def test_initial_update_is_nonzero_and_the_base_is_untouched():
    torch.manual_seed(2)
    base = nn.Linear(64, 48)
    weight = base.weight.detach().clone()
    layer = NZLoRA(base, rank=8, alpha=16)
    # No pretrained-weight manipulation: W stays W, the update s * B0 A0 is added on top.
    assert torch.equal(layer.base.weight, weight)
    delta = layer.delta_weight()
    assert torch.allclose(delta, 2.0 * layer.lora_B @ layer.lora_A)
    # Each entry of B0 A0 has variance r * (16 / (3 m))^2, so s * B0 A0 has
    # std s * sqrt(r) * 16 / (3 m) = 2 * sqrt(8) * 16 / 192 = 0.471.
    assert delta.std().item() == pytest.approx(2 * math.sqrt(8) * 16 / 192, rel=0.15)
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert torch.allclose(layer(x), layer.base(x) + x @ delta.T, atol=1e-5)
        assert (layer(x) - layer.base(x)).abs().max().item() > 0.1


def test_hand_computed_delta():
    layer = NZLoRA(nn.Linear(3, 2, bias=False), rank=2, alpha=4.0)  # s = 2
    with torch.no_grad():
        layer.base.weight.zero_()
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # B A = [[1, 2, 0], [3, -1, 7]]
    expected = torch.tensor([[2.0, 4.0, 0.0], [6.0, -2.0, 14.0]])
    assert torch.allclose(layer.delta_weight(), expected)
    with torch.no_grad():
        got = layer(torch.tensor([[1.0, -1.0, 0.5]]))
    assert torch.allclose(got, torch.tensor([[-2.0, 15.0]]), atol=1e-6)


def test_seeded_init_is_reproducible_and_inject_changes_outputs(minilm, batch):
    torch.manual_seed(3)
    first = NZLoRA(nn.Linear(16, 8), rank=4, alpha=8)
    torch.manual_seed(3)
    second = NZLoRA(nn.Linear(16, 8), rank=4, alpha=8)
    assert torch.equal(first.lora_A, second.lora_A) and torch.equal(first.lora_B, second.lora_B)
    with torch.no_grad():
        before = minilm(**batch).logits
        inject(minilm, "nzlora", targets=("query", "value"), rank=8, alpha=16)
        after = minilm(**batch).logits
    assert (after - before).abs().max().item() > 1e-3
