"""PiSSA (Eqs. (90)-(92)): principal singular triplets split sqrt(S) each way, the residual base
reproducing W, exact and fast SVD against PEFT's own init, merge exactness, determinism."""

import copy

import pytest
import torch
from helpers import linear_with
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    adapter_extra_state,
    adapter_layers,
    build_params,
    get_variant,
    inject,
    merge_adapters,
)
from lorabench.variants.pissa import PiSSAParams

SPEC = get_variant("pissa")
PiSSA = SPEC.layer_cls
SQRT2 = 1.4142135


def pissa(weight, rank, alpha, svd_iters=64, bias=False):
    params = build_params("pissa", {"svd_iters": svd_iters})
    return PiSSA(linear_with(weight, bias), rank=rank, alpha=alpha, params=params)


def separated_weight(out_f=24, in_f=16, seed=0):
    """A weight with a well-separated spectrum 16, 8, 4, ... (fast SVD converges to exact)."""
    gen = torch.Generator().manual_seed(seed)
    k = min(out_f, in_f)
    u = torch.linalg.qr(torch.randn(out_f, k, generator=gen)).Q
    v = torch.linalg.qr(torch.randn(in_f, k, generator=gen)).Q
    s = 16.0 * 0.5 ** torch.arange(k, dtype=torch.float32)
    return u @ torch.diag(s) @ v.T, s


def peft_init(weight, mode, rank, alpha):
    """PEFT's own initialisation of the same weight: (lora_A, lora_B, residual base)."""
    peft = pytest.importorskip("peft")
    model = nn.Sequential(linear_with(weight))
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"], init_lora_weights=mode)
    layer = peft.get_peft_model(model, config).base_model.model[0]
    return (
        layer.lora_A["default"].weight.detach(),
        layer.lora_B["default"].weight.detach(),
        layer.base_layer.weight.detach(),
    )


def assert_same_up_to_sign(ours, lora_a, lora_b, atol):
    # One sign per singular triplet: A's row i and B's column i flip together.
    sign = torch.sign((ours.lora_A * lora_a).sum(dim=1)).detach()
    assert torch.all(sign != 0)
    assert (ours.lora_A - sign[:, None] * lora_a).abs().max().item() <= atol
    assert (ours.lora_B - lora_b * sign[None, :]).abs().max().item() <= atol


def test_paper_defaults_and_flags():
    assert build_params("pissa", None) == PiSSAParams(svd_iters=64)  # paper: 64 fast-SVD iters
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft_export is None
    assert PiSSA.zero_init is False and PiSSA.modifies_base is True
    with pytest.raises(InvalidVariantParams, match="svd_iters"):
        build_params("pissa", {"svd_iters": -1})
    layer = pissa(torch.randn(6, 5), rank=2, alpha=4)
    assert layer.scaling == 2.0  # alpha / r, as LoRA
    assert PiSSA.expected_param_count(5, 6, 2) == 2 * (5 + 6)


@pytest.mark.parametrize("svd_iters", [0, 64])
def test_hand_computed_init(svd_iters):
    # W = [[0, 4, 0], [2, 0, 0]]: sigma_1 = 4 (u = e1, v = e2), sigma_2 = 2 (u = e2, v = e1).
    # r = 1, alpha = 2 -> s = 2; S / s = 2, so A = sqrt(2) e2^T and B = sqrt(2) e1 (up to sign),
    # s * B A = [[0, 4, 0], [0, 0, 0]] and the residual keeps [[0, 0, 0], [2, 0, 0]].
    layer = pissa(torch.tensor([[0.0, 4.0, 0.0], [2.0, 0.0, 0.0]]), 1, 2.0, svd_iters)
    sign = torch.sign(layer.lora_A[0, 1]).item()
    assert torch.allclose(layer.lora_A * sign, torch.tensor([[0.0, SQRT2, 0.0]]), atol=1e-5)
    assert torch.allclose(layer.lora_B * sign, torch.tensor([[SQRT2], [0.0]]), atol=1e-5)
    residual = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert torch.allclose(layer.base.weight, residual, atol=1e-5)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    with torch.no_grad():
        # base: residual x = [0, 2]; adapter: [8, 0]; together W x = [8, 2].
        assert torch.allclose(layer.base(x), torch.tensor([[0.0, 2.0]]), atol=1e-5)
        assert torch.allclose(layer(x), torch.tensor([[8.0, 2.0]]), atol=1e-5)


def test_hand_computed_delta_after_training():
    layer = pissa(torch.tensor([[0.0, 4.0, 0.0], [2.0, 0.0, 0.0]]), 1, 2.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0], [3.0]]))
    # s * B A = 2 * [[1, 0, 2], [3, 0, 6]]
    expected = torch.tensor([[2.0, 0.0, 4.0], [6.0, 0.0, 12.0]])
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-6)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    with torch.no_grad():
        # residual x = [0, 2], delta x = [14, 42]
        assert torch.allclose(layer(x), torch.tensor([[14.0, 44.0]]), atol=1e-5)


@pytest.mark.parametrize("svd_iters", [0, 64])
def test_residual_plus_adapter_reproduces_w(svd_iters):
    torch.manual_seed(0)
    weight = torch.randn(40, 24) / 5
    layer = pissa(weight, rank=8, alpha=16, svd_iters=svd_iters, bias=True)
    rebuilt = layer.base.weight + layer.delta_weight()
    assert (rebuilt - weight).abs().max().item() <= 1e-4
    # The adapter really holds part of W: the base is no longer W.
    assert (layer.base.weight - weight).norm() > 0.3 * weight.norm()
    x = torch.randn(5, 24)
    with torch.no_grad():
        expected = x @ weight.T + layer.base.bias
        assert (layer(x) - expected).abs().max().item() <= 1e-4


def test_exact_svd_takes_the_principal_part_with_sqrt_s_on_each_side():
    torch.manual_seed(1)
    weight = torch.randn(30, 20)
    layer = pissa(weight, rank=5, alpha=20, svd_iters=0)  # s = 4
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    principal = u[:, :5] @ torch.diag(s[:5]) @ vh[:5]
    assert (layer.delta_weight() - principal).abs().max().item() <= 1e-4
    # Eckart-Young: the residual is W's best rank-(n - r) remainder, spectrum s[5:].
    svals = torch.linalg.svdvals(layer.base.weight)
    assert torch.allclose(svals[:15], s[5:], atol=1e-4)
    # Balanced split (PEFT): A A^T = B^T B = diag(S_r / s).
    gram = torch.diag(s[:5] / 4)
    assert torch.allclose(layer.lora_A @ layer.lora_A.T, gram, atol=1e-4)
    assert torch.allclose(layer.lora_B.T @ layer.lora_B, gram, atol=1e-4)


def test_fast_svd_is_balanced_and_converges_on_a_separated_spectrum():
    weight, s = separated_weight()
    fast = pissa(weight, rank=4, alpha=8, svd_iters=64)
    exact = pissa(weight, rank=4, alpha=8, svd_iters=0)
    assert_same_up_to_sign(fast, exact.lora_A.detach(), exact.lora_B.detach(), atol=1e-5)
    gram = torch.diag(s[:4] / 2)
    assert torch.allclose(fast.lora_A @ fast.lora_A.T, gram, atol=1e-4)
    assert torch.allclose(fast.lora_B.T @ fast.lora_B, gram, atol=1e-4)


def test_exact_init_matches_peft_pissa_on_a_minilm_weight(minilm):
    weight = minilm.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    lora_a, lora_b, residual = peft_init(weight, "pissa", rank=8, alpha=16)
    ours = pissa(weight, rank=8, alpha=16, svd_iters=0)
    assert_same_up_to_sign(ours, lora_a, lora_b, atol=1e-5)
    assert (ours.base.weight - residual).abs().max().item() <= 1e-5


def test_fast_init_matches_peft_pissa_niter_64():
    weight, _ = separated_weight(48, 32, seed=3)
    lora_a, lora_b, residual = peft_init(weight, "pissa_niter_64", rank=6, alpha=12)
    ours = pissa(weight, rank=6, alpha=12)
    assert_same_up_to_sign(ours, lora_a, lora_b, atol=1e-4)
    assert (ours.base.weight - residual).abs().max().item() <= 1e-4


def test_init_is_a_function_of_the_weight_only():
    weight = torch.randn(20, 12)
    torch.manual_seed(5)
    first = pissa(weight, rank=4, alpha=8)
    base = linear_with(weight)  # nn.Linear's own init draws from the global RNG
    state = torch.get_rng_state()
    second = PiSSA(base, rank=4, alpha=8)
    # The fast SVD draws its test matrix from its own generator, not the global RNG ...
    assert torch.equal(torch.get_rng_state(), state)
    # ... so two injections of one model agree bit for bit (what a resume/export rebuild needs).
    for name in ("lora_A", "lora_B"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert torch.equal(first.base.weight, second.base.weight)


def test_rank_above_min_dim_falls_back_to_lora_init_for_the_extra_components():
    torch.manual_seed(2)
    weight = torch.randn(3, 4)
    layer = pissa(weight, rank=5, alpha=5, svd_iters=0)
    assert layer.lora_A.shape == (5, 4) and layer.lora_B.shape == (3, 5)
    # All 3 singular triplets move to the adapter: the residual is ~0 and W is reproduced.
    assert layer.base.weight.abs().max().item() <= 1e-5
    assert (layer.base.weight + layer.delta_weight() - weight).abs().max().item() <= 1e-5
    # Components 4-5: Eq. (88), A ~ U(+-1/sqrt(in)) and B = 0, so they can still train.
    assert torch.count_nonzero(layer.lora_B[:, 3:]) == 0
    extra = layer.lora_A[3:]
    assert 0 < extra.abs().max().item() <= 0.5 and torch.count_nonzero(extra) == extra.numel()


def test_merge_restores_w_at_init_and_unmerge_restores_the_residual():
    torch.manual_seed(3)
    weight = torch.randn(12, 10)
    layer = pissa(weight, rank=3, alpha=6)
    residual = layer.base.weight.detach().clone()
    layer.merge()
    assert (layer.base.weight - weight).abs().max().item() <= 1e-5
    layer.unmerge()
    assert (layer.base.weight - residual).abs().max().item() <= 1e-6


def test_reset_recuts_factors_without_changing_the_function():
    torch.manual_seed(4)
    layer = pissa(torch.randn(10, 8), rank=2, alpha=4, svd_iters=0)
    with torch.no_grad():
        layer.lora_A.add_(torch.randn_like(layer.lora_A))
    effective = (layer.base.weight + layer.delta_weight()).detach().clone()
    layer.reset_adapter_parameters()
    assert (layer.base.weight + layer.delta_weight() - effective).abs().max().item() <= 1e-5
    u, s, vh = torch.linalg.svd(effective)
    top = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
    assert (layer.delta_weight() - top).abs().max().item() <= 1e-4
    layer.merge()
    with pytest.raises(ValueError, match="unmerge"):
        layer.reset_adapter_parameters()


def test_bf16_base_reconstructs_within_bf16_rounding():
    torch.manual_seed(6)
    weight = (torch.randn(32, 16) / 4).to(torch.bfloat16)
    layer = pissa(weight.float(), rank=4, alpha=8).to(torch.bfloat16)
    fresh = PiSSA(linear_with(weight.float()).to(torch.bfloat16), rank=4, alpha=8)
    for lay in (layer, fresh):
        rebuilt = lay.base.weight.float() + lay.delta_weight().float()
        assert (rebuilt - weight.float()).abs().max().item() <= 2e-2
    # fp32 master factors on the bf16 base (the residual is the only bf16 rounding).
    assert (fresh.lora_A.dtype, fresh.base.weight.dtype) == (torch.float32, torch.bfloat16)


def test_minilm_inject_preserves_logits_and_checkpoints_the_base(minilm, batch):
    with torch.no_grad():
        before = minilm(**batch).logits
    original = copy.deepcopy(minilm.bert.encoder.layer[0].attention.self.query.weight)
    report = inject(minilm, "pissa", targets=("query", "value"), rank=8, alpha=16)
    with torch.no_grad():
        after = minilm(**batch).logits
    assert (after - before).abs().max().item() <= 1e-4
    layer = minilm.bert.encoder.layer[0].attention.self.query
    assert not torch.allclose(layer.base.weight, original)
    extra = adapter_extra_state(minilm)
    assert {f"{name}.base.weight" for name in report.wrapped} <= set(extra)
    assert len(adapter_layers(minilm)) == 12
    merge_adapters(minilm)
    assert (layer.base.weight - original).abs().max().item() <= 1e-5
