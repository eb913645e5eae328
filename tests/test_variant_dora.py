"""DoRA: Eq. (68) by hand, magnitude init, detached norm, no dense update in the graph."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from torch import nn

from lorabench.variants import build_params, get_variant, inject, merge_adapters
from lorabench.variants.dora import DoRALinear, DoRAParams

# W (out=2, in=3); A has non-orthogonal rows so the Gram expansion's cross terms all matter.
HAND_W = [[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]
HAND_A = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
HAND_B = [[-0.5, 2.0], [-0.5, 1.0]]
# s = alpha / r = 2: s B A = [[3, 4, 0], [1, 2, 0]], W + s B A = [[6, 8, 0], [1, 2, 2]],
# row norms [10, 3]. With m = [5, 6]: W' = [[0.5*6, 0.5*8, 0], [2*1, 2*2, 2*2]].
HAND_M = [5.0, 6.0]
HAND_W_ADAPTED = [[3.0, 4.0, 0.0], [2.0, 4.0, 4.0]]


def hand_layer(bias=True):
    base = nn.Linear(3, 2, bias=bias)
    with torch.no_grad():
        base.weight.copy_(torch.tensor(HAND_W))
        if bias:
            base.bias.copy_(torch.tensor([0.5, -0.5]))
    layer = DoRALinear(base, rank=2, alpha=4.0)
    return layer


def test_magnitude_starts_at_row_norm_of_w():
    layer = hand_layer()
    # ||[3, 4, 0]|| = 5, ||[0, 0, 2]|| = 2: the norm is per output row (PyTorch layout).
    assert torch.allclose(layer.lora_magnitude, torch.tensor([5.0, 2.0]))
    assert torch.count_nonzero(layer.lora_B) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_hand_computed_delta_and_forward():
    layer = hand_layer()
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor(HAND_A))
        layer.lora_B.copy_(torch.tensor(HAND_B))
        layer.lora_magnitude.copy_(torch.tensor(HAND_M))
        assert torch.allclose(layer.column_norm(), torch.tensor([10.0, 3.0]), atol=1e-6)
        expected_delta = torch.tensor(HAND_W_ADAPTED) - torch.tensor(HAND_W)  # [[0,0,0],[2,4,2]]
        assert torch.allclose(layer.delta_weight(), expected_delta, atol=1e-6)
        x = torch.tensor([[1.0, -1.0, 0.5]])
        # W' x = [3 - 4, 2 - 4 + 2] = [-1, 0]; plus bias [0.5, -0.5].
        assert torch.allclose(layer(x), torch.tensor([[-0.5, -0.5]]), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fresh_layer_is_exactly_the_base_even_in_bf16_and_with_zero_rows(dtype):
    torch.manual_seed(0)
    base = nn.Linear(6, 5).to(dtype)
    with torch.no_grad():
        base.weight[2].zero_()  # m = 0 = ||W_2||: must not become 0 / 0
    layer = DoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(4, 6, dtype=dtype)
    with torch.no_grad():
        out = layer(x)
    assert torch.isfinite(out.float()).all()
    assert torch.equal(out, base(x))
    assert torch.equal(layer.magnitude_scale(), torch.ones(5, dtype=dtype))


def test_gram_norm_equals_dense_norm_and_adapted_rows_have_norm_m():
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(11, 7), rank=4, alpha=3.0)
    randomise(nn.Sequential(layer))
    with torch.no_grad():
        dense = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A
        assert torch.allclose(layer.column_norm(), dense.norm(dim=1), rtol=1e-5)
        # W' = m * V / ||V||: every row of the adapted weight has norm |m_i|.
        adapted = layer.base.weight + layer.delta_weight()
        assert torch.allclose(adapted.norm(dim=1), layer.lora_magnitude.abs(), rtol=1e-5)
        merge_adapters(nn.Sequential(layer))
        assert torch.allclose(layer.base.weight.norm(dim=1), layer.lora_magnitude.abs(), rtol=1e-5)


def reference_loss(layer, x, detach_norm):
    w, a, b, m = layer.base.weight, layer.lora_A, layer.lora_B, layer.lora_magnitude
    v = w + layer.scaling * b @ a
    norm = v.norm(dim=1, keepdim=True)
    if detach_norm:
        norm = norm.detach()
    return F.linear(x, m.unsqueeze(1) * v / norm, layer.base.bias).pow(2).sum()


def test_norm_is_a_constant_in_backward():
    # DoRA §4.3 / PEFT: ||W + s B A|| gets no gradient; m, A and B still do.
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(5, 4), rank=2, alpha=4.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(8, 5)
    params = [layer.lora_A, layer.lora_B, layer.lora_magnitude]
    ours = torch.autograd.grad(layer(x).pow(2).sum(), params)
    detached = torch.autograd.grad(reference_loss(layer, x, True), params)
    full = torch.autograd.grad(reference_loss(layer, x, False), params)
    for got, want in zip(ours, detached, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    # The check can tell the two apart: with the norm in the graph A and B get other gradients.
    assert not torch.allclose(ours[0], full[0], atol=1e-3)


def test_forward_keeps_no_dense_update_in_the_graph():
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(37, 29), rank=3, alpha=6.0)
    randomise(nn.Sequential(layer))
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(torch.randn(2, 5, 37))
    assert saved, "the hook saw nothing, so the check below would be vacuous"
    assert (29, 37) not in saved and (37, 29) not in saved
    out.sum().backward()
    assert layer.lora_magnitude.grad is not None


def test_dropout_reaches_both_adapter_terms_but_not_the_base():
    # PEFT / official DoRA: base(x) + (g - 1) W x' + g s B A x' with one mask, x' = dropout(x).
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(5, 4), rank=2, alpha=4.0, dropout=0.5)
    randomise(nn.Sequential(layer))
    x = torch.randn(16, 5)
    torch.manual_seed(7)
    with torch.no_grad():
        out = layer.train()(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)
    with torch.no_grad():
        g = layer.magnitude_scale()
        low_rank = F.linear(dropped, layer.lora_B @ layer.lora_A) * layer.scaling
        w = layer.base.weight
        expected = layer.base(x) + (g - 1) * F.linear(dropped, w) + g * low_rank
        assert torch.allclose(out, expected, atol=1e-5)
        # In eval mode dropout is off and the layer is exactly g (W x + s B A x) + b.
        evaluated = layer.eval()(x)
        plain = g * (F.linear(x, w) + F.linear(x, layer.lora_B @ layer.lora_A) * layer.scaling)
        assert torch.allclose(evaluated, plain + layer.base.bias, atol=1e-5)


def test_matches_peft_dora_with_dropout_in_train_mode():
    pytest.importorskip("peft")
    from lorabench.variants.peft_export import to_peft

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5))
    ours = copy.deepcopy(base)
    inject(ours, "dora", targets=("0",), rank=2, alpha=4, dropout=0.5)
    randomise(ours)  # m != ||W + s B A|| so that the (g - 1) W x' term matters
    theirs = to_peft(ours, lambda: copy.deepcopy(base), "dora", rank=2, alpha=4, dropout=0.5,
                     params=DoRAParams())  # fmt: skip
    ours.train()
    theirs.train()
    peft_layer = theirs.base_model.model[0]
    assert isinstance(peft_layer.lora_dropout["default"], nn.Dropout)
    x = torch.randn(16, 6)
    weights = torch.randn(16, 5)
    layer = ours[0]
    mine = [layer.lora_A, layer.lora_B, layer.lora_magnitude]
    peft_params = [peft_layer.lora_A["default"].weight, peft_layer.lora_B["default"].weight,
                   peft_layer.lora_magnitude_vector["default"].weight]  # fmt: skip

    def run(model, params, seed):  # same seed, same single dropout draw: the same mask
        xi = x.clone().requires_grad_()
        torch.manual_seed(seed)
        out = model(xi)
        return out, torch.autograd.grad((out * weights).sum(), [*params, xi])

    for seed in (1, 2):
        out, grads = run(ours, mine, seed)
        want, want_grads = run(theirs, peft_params, seed)
        assert torch.allclose(out, want, atol=1e-5)
        for got, ref in zip(grads, want_grads, strict=True):
            assert torch.allclose(got, ref, atol=1e-5)
    # The check is not vacuous: the mask changes the output.
    with torch.no_grad():
        assert (out - ours.eval()(x)).abs().max() > 1e-2


def test_float64_layer_keeps_float64_norm_forward_and_merge():
    # vector_norm(..., dtype=float32) refused a float64 weight; the norm now never narrows.
    layer = hand_layer().double()
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor(HAND_A))
        layer.lora_B.copy_(torch.tensor(HAND_B))
        layer.lora_magnitude.copy_(torch.tensor(HAND_M))
    x = torch.tensor([[1.0, -1.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        assert layer.column_norm().dtype == torch.float64
        assert torch.equal(layer.column_norm(), torch.tensor([10.0, 3.0], dtype=torch.float64))
        assert torch.allclose(layer(x), torch.tensor([[-0.5, -0.5]], dtype=torch.float64))
    # Random values: agreement to float64 precision, far below what a float32 norm would give.
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(9, 7).double(), rank=3, alpha=6.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(4, 9, dtype=torch.float64)
    with torch.no_grad():
        w, a, b, m = layer.base.weight, layer.lora_A, layer.lora_B, layer.lora_magnitude
        v = w + layer.scaling * b @ a
        adapted = m.unsqueeze(1) * v / v.norm(dim=1, keepdim=True)
        expected = F.linear(x, adapted, layer.base.bias)
        torch.testing.assert_close(layer.column_norm(), v.norm(dim=1), rtol=1e-12, atol=0.0)
        out = layer(x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        merge_adapters(nn.Sequential(layer))
        assert layer.merged and layer.base.weight.dtype == torch.float64
        torch.testing.assert_close(layer.base.weight, adapted, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_checkpointed_adapter_gives_the_same_gradients():
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(5, 4), rank=2, alpha=4.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 5)
    params = [p for _, p in layer.adapter_named_parameters()]
    plain = torch.autograd.grad(layer(x).sum(), params)
    layer.checkpoint_adapter = True
    checkpointed = torch.autograd.grad(layer(x).sum(), params)
    for a, b in zip(plain, checkpointed, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_defaults_registry_and_param_count():
    spec = get_variant("dora")
    assert spec.family == "optimization" and spec.merges and spec.peft
    assert dataclasses.fields(DoRAParams) == ()  # paper: "DoRA: No extra hyperparameters"
    assert build_params("dora", None) == DoRAParams()
    layer = DoRALinear(nn.Linear(4, 4), rank=8, alpha=16)
    assert layer.scaling == 2.0  # Eq. (68): gamma_r = alpha / r
    # 2 * 768 * 8 LoRA weights plus 768 magnitudes per 768x768 layer.
    assert DoRALinear.expected_param_count(768, 768, 8) == 2 * 768 * 8 + 768
    model = nn.Sequential(nn.Linear(6, 3))
    report = inject(model, "dora", targets=("0",), rank=2, alpha=4)
    assert report.adapter_params == 2 * (6 + 3) + 3
    assert "merged_delta" not in str(list(model.state_dict()))


def test_peft_config_uses_dora():
    from lorabench.variants.base import PeftSettings

    settings = PeftSettings(["q"], 4, 8.0, 0.1, DoRAParams(), [])
    config = get_variant("dora").peft_export.make_config(settings)
    assert config.use_dora and config.r == 4 and config.lora_alpha == 8.0
    assert config.lora_dropout == 0.1 and not config.use_rslora


def test_combine_backward_matches_finite_differences():
    from lorabench.variants.dora import _Combine

    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(2, 3, 4, generator=gen, dtype=torch.float64) for _ in range(3)]
    scale = torch.randn(4, generator=gen, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (*tensors, scale)]
    assert torch.autograd.gradcheck(_Combine.apply, inputs)
