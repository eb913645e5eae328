"""Adapter library: every registered variant is checked by the parametrised tests."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import linear_with, randomise
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lorabench.variants import (
    FAMILIES,
    AdapterLinear,
    AdapterStateError,
    InjectError,
    InvalidVariantParams,
    Site,
    UnknownVariantError,
    adapter_layers,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
    load_adapter_state_dict,
    merge_adapters,
    register,
    set_adapters_enabled,
    unmerge_adapters,
    variant_names,
)
from lorabench.variants.inject import SHARED_ATTR

VARIANTS = variant_names()
# Variants with a dense delta that merge() folds into the weight (not the nonlinear ones).
MERGEABLE = [v for v in VARIANTS if get_variant(v).merges]
# Variants whose fresh adapter is the identity; the others test their initial delta themselves.
ZERO_INIT = [v for v in VARIANTS if get_variant(v).layer_cls.zero_init]
# Residual inits: a non-zero adapter at init from W's SVD/QR, offset by rewriting the frozen
# weight in the constructor, so outputs are preserved and merging gives W back. (GOAT also
# rewrites W, but its router-weighted experts do not cancel exactly at init.)
RESIDUAL_INIT = ["milora", "olora", "pissa"]


def local_and_shared_count(variant: str, sites: list[Site], rank: int) -> int:
    cls, params = get_variant(variant).layer_cls, build_params(variant, None)
    local = sum(
        cls.expected_param_count(s.in_features, s.out_features, rank, params) for s in sites
    )
    return local + cls.shared_param_count(sites, rank, params)


# --- helpers -----------------------------------------------------------------------------------
def mlp(bias: bool = True, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8, bias=bias), nn.ReLU(), nn.Linear(8, 8, bias=bias), nn.ReLU(),
        nn.Linear(8, 3),
    ).to(dtype)  # fmt: skip


def make_layer(variant: str, in_f=5, out_f=4, rank=3, alpha=6.0, bias=True) -> AdapterLinear:
    torch.manual_seed(1)
    return get_variant(variant).layer_cls(nn.Linear(in_f, out_f, bias=bias), rank=rank, alpha=alpha)


def base_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


# --- identity at init ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ZERO_INIT)
def test_fresh_inject_is_identity_mlp(variant):
    model = mlp()
    x = torch.randn(4, 6)
    before = model(x)
    report = inject(model, variant, targets=("0", "2"), rank=2, alpha=4)
    assert report.wrapped == ["0", "2"]
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("variant", ZERO_INIT)
def test_fresh_inject_is_identity_minilm(variant, minilm, batch):
    with torch.no_grad():
        before = minilm(**batch).logits
        report = inject(
            minilm, variant, targets=("query", "key", "value", "dense"), rank=8, alpha=16
        )
        after = minilm(**batch).logits
    assert len(report.wrapped) == 6 * 6 + 1
    assert (after - before).abs().max().item() <= 1e-7


@pytest.mark.parametrize("variant", RESIDUAL_INIT)
def test_residual_init_preserves_minilm_logits(variant, minilm, batch):
    with torch.no_grad():
        before = minilm(**batch).logits
        inject(minilm, variant, targets=("query", "value"), rank=8, alpha=16)
        after = minilm(**batch).logits
    assert (after - before).abs().max().item() <= 1e-4


@pytest.mark.parametrize("variant", [v for v in RESIDUAL_INIT if v in MERGEABLE])
def test_residual_init_merge_gives_back_w(variant):
    torch.manual_seed(3)
    weight = torch.randn(9, 7)
    layer = get_variant(variant).layer_cls(linear_with(weight), rank=3, alpha=6)
    residual = layer.base.weight.detach().clone()
    layer.merge()
    assert (layer.base.weight - weight).abs().max().item() <= 1e-5
    layer.unmerge()
    assert (layer.base.weight - residual).abs().max().item() <= 1e-6


# --- merge / unmerge ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", MERGEABLE)
def test_merge_matches_unmerged_and_unmerge_restores(variant):
    model = mlp()
    inject(model, variant, targets=("0", "2"), rank=3, alpha=5)
    randomise(model)
    x = torch.randn(7, 6)
    frozen = base_weights(model)
    with torch.no_grad():
        unmerged = model(x)
        assert merge_adapters(model) == 2
        assert all(layer.merged for _, layer in adapter_layers(model))
        merged = model(x)
        assert not torch.equal(model[0].base.weight, frozen["0.base.weight"])
        assert unmerge_adapters(model) == 2
        again = model(x)
    assert (merged - unmerged).abs().max().item() <= 1e-5
    assert (again - unmerged).abs().max().item() <= 1e-5
    for name, w in base_weights(model).items():
        assert (w - frozen[name]).abs().max().item() <= 1e-6, name


@pytest.mark.parametrize("variant", MERGEABLE)
def test_merge_state_errors(variant):
    layer = make_layer(variant)
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()
    model = nn.Sequential(make_layer(variant))
    with pytest.raises(ValueError, match="not merged"):
        unmerge_adapters(model)
    merge_adapters(model)
    with pytest.raises(ValueError, match="already merged"):
        merge_adapters(model)


@pytest.mark.parametrize("variant", MERGEABLE)
def test_disabled_gives_base_output_merged_or_not(variant):
    layer = make_layer(variant)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 5)
    with torch.no_grad():
        base_out = layer.base(x)
        assert not torch.allclose(layer(x), base_out)
        model = nn.Sequential(layer)
        assert set_adapters_enabled(model, False) == 1
        assert torch.equal(layer(x), base_out)
        layer.merge()
        assert (layer(x) - base_out).abs().max().item() <= 1e-5
        set_adapters_enabled(model, True)
        layer.unmerge()
        assert not torch.allclose(layer(x), base_out)


@pytest.mark.parametrize("variant", MERGEABLE)
@settings(max_examples=20, deadline=None)
@given(
    in_f=st.integers(1, 9),
    out_f=st.integers(1, 9),
    rank=st.integers(1, 6),
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=2),
)
def test_efficient_path_equals_dense_delta(variant, in_f, out_f, rank, lead):
    layer = make_layer(variant, in_f=in_f, out_f=out_f, rank=rank, alpha=3.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(*lead, in_f)
    with torch.no_grad():
        out = layer(x)
        assert out.shape == (*lead, out_f)
        dense = layer.base(x) + F.linear(x, layer.delta_weight())
    assert layer.delta_weight().shape == (out_f, in_f)
    assert (out - dense).abs().max().item() <= 1e-5


# --- hand-computed delta ------------------------------------------------------------------------
# A (r=2, in=3) and B (out=2, r=2), alpha = 4: B @ A = [[1, 2, 0], [3, -1, 7]].
HAND_A = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]
HAND_B = [[1.0, 2.0], [3.0, -1.0]]
HAND_EXPECTED = {
    # scaling alpha / r = 2.0
    "lora": [[2.0, 4.0, 0.0], [6.0, -2.0, 14.0]],
    # scaling alpha / sqrt(r) = 2.8284271
    "rslora": [[2.8284271, 5.6568542, 0.0], [8.4852814, -2.8284271, 19.7989899]],
}


@pytest.mark.parametrize("variant", sorted(HAND_EXPECTED))
def test_hand_computed_delta(variant):
    layer = get_variant(variant).layer_cls(nn.Linear(3, 2), rank=2, alpha=4.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor(HAND_A))
        layer.lora_B.copy_(torch.tensor(HAND_B))
    expected = torch.tensor(HAND_EXPECTED[variant])
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-5)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        # delta @ x = [[2-4+0], [6+2+7]] * (s / 2)
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[-2.0, 15.0]]) * layer.scaling / 2, atol=1e-5)


def test_paper_default_scalings():
    lora = get_variant("lora").layer_cls(nn.Linear(4, 4), rank=8, alpha=16)
    rslora = get_variant("rslora").layer_cls(nn.Linear(4, 4), rank=8, alpha=16)
    assert lora.scaling == 2.0
    assert rslora.scaling == pytest.approx(16 / math.sqrt(8))


@pytest.mark.parametrize("variant", ["lora", "rslora"])
def test_lora_init_matches_eq88(variant):
    layer = get_variant(variant).layer_cls(nn.Linear(400, 30), rank=16, alpha=16)
    bound = 1 / math.sqrt(400)
    assert layer.lora_A.shape == (16, 400) and layer.lora_B.shape == (30, 16)
    assert layer.lora_A.abs().max().item() <= bound
    assert layer.lora_A.abs().max().item() > 0.9 * bound
    assert torch.count_nonzero(layer.lora_B) == 0


# --- parameter counts ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
def test_expected_param_count(variant, bias):
    layer = make_layer(variant, in_f=7, out_f=5, rank=3, bias=bias)
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    # A standalone layer of a sharing variant owns its shared parameters (a group of one).
    assert trainable == local_and_shared_count(variant, [Site("", "", 7, 5)], 3)
    assert not any(p.requires_grad for p in layer.base.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_inject_report_counts_minilm(variant, minilm):
    report = inject(
        minilm, variant, targets=("query", "value"), rank=4, alpha=8, trainable=("classifier",)
    )
    hidden = minilm.config.hidden_size
    sites = [Site(name, name.rpartition(".")[2], hidden, hidden) for name in report.wrapped]
    expected_adapter = local_and_shared_count(variant, sites, 4)
    head = sum(p.numel() for p in minilm.classifier.parameters())
    assert report.adapter_params == expected_adapter
    assert report.trainable_params == expected_adapter + head
    assert report.trainable_params == sum(p.numel() for p in minilm.parameters() if p.requires_grad)
    assert report.total_params == sum(p.numel() for p in minilm.parameters())
    assert "12 layers" in report.summary()


# --- gradients and dtypes -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_only_adapters_and_trainable(variant):
    model = mlp()
    inject(model, variant, targets=("0", "2"), rank=2, alpha=4, trainable=("4",))
    frozen = base_weights(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("4.")} | {
        f"{n}.{pn}"
        for n, layer in adapter_layers(model)
        for pn, _ in layer.adapter_named_parameters()
    } | {n for n, _ in model.named_parameters() if n.startswith(f"{SHARED_ATTR}.")}
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 6)).pow(2).mean().backward()
        opt.step()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name
    for name, w in base_weights(model).items():
        assert torch.equal(w, frozen[name]), name
    for name, p in model.named_parameters():
        if name in trainable:
            assert not torch.equal(p.detach(), initial[name]), f"{name} was not updated"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4,), (2, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_backward_dtypes(variant, dtype, shape, bias):
    layer = make_layer(variant, bias=bias).to(dtype)
    randomise(nn.Sequential(layer))
    assert all(p.dtype == dtype for p in layer.parameters())
    x = torch.randn(*shape, 5, dtype=dtype, requires_grad=True)
    out = layer(x)
    assert out.dtype == layer.base(x).dtype == dtype
    assert out.shape == (*shape, 4)
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype
    for _, p in layer.adapter_named_parameters():
        assert p.grad is not None and p.grad.dtype == dtype
        assert torch.isfinite(p.grad.float()).all()
    assert layer.base.weight.grad is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_autocast_bf16_with_fp32_params(variant):
    layer = make_layer(variant)
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        ref = layer.base(x)
    assert out.dtype == ref.dtype == torch.bfloat16
    out.float().sum().backward()
    for _, p in layer.adapter_named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32


@pytest.mark.parametrize(
    ("base", "adapter"),
    [(torch.bfloat16, torch.float32), (torch.float64, torch.float64)],
    ids=["bf16", "fp64"],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_adapter_params_are_fp32_master_weights_or_wider(variant, base, adapter):
    model = mlp(dtype=base)
    inject(model, variant, targets=("0",), rank=2, alpha=4)
    for _, p in model[0].adapter_named_parameters():
        assert p.dtype == adapter and p.device == model[0].base.weight.device


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_only_in_train_mode(variant):
    layer = get_variant(variant).layer_cls(nn.Linear(5, 4), rank=2, alpha=4, dropout=0.5)
    randomise(nn.Sequential(layer))
    x = torch.randn(64, 5)
    with torch.no_grad():
        layer.eval()
        assert torch.equal(layer(x), layer(x))
        layer.train()
        torch.manual_seed(0)
        assert not torch.allclose(layer(x), layer.eval()(x))


def test_extra_repr_and_layer_validation():
    text = repr(make_layer("lora"))
    assert "variant=lora" in text and "rank=3" in text and "alpha=6" in text
    cls = get_variant("lora").layer_cls
    with pytest.raises(ValueError, match="rank"):
        cls(nn.Linear(3, 3), rank=0, alpha=1)
    with pytest.raises(TypeError):
        cls(nn.Conv1d(3, 3, 1), rank=1, alpha=1)


# --- pattern matching ---------------------------------------------------------------------------
def test_query_wraps_exactly_six_minilm_layers(minilm):
    report = inject(minilm, "lora", targets=("query",), rank=2, alpha=4)
    assert len(report.wrapped) == 6
    assert all(n.endswith(".attention.self.query") for n in report.wrapped)


def test_exact_match_skips_longer_names():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.query = nn.Linear(4, 4)
            self.query_proj = nn.Linear(4, 4)
            self.subquery = nn.Linear(4, 4)

    model = nn.Sequential(Block(), Block())
    report = inject(model, "lora", targets=("query",), rank=2, alpha=4)
    assert report.wrapped == ["0.query", "1.query"]
    assert isinstance(model[0].query_proj, nn.Linear)
    assert isinstance(model[0].subquery, nn.Linear)


def test_dense_with_trainable_classifier(minilm):
    report = inject(minilm, "lora", targets=("dense",), rank=2, alpha=4, trainable=("classifier",))
    assert len(report.wrapped) == 3 * 6 + 1  # attention.output, intermediate, output + pooler
    assert all(p.requires_grad for p in minilm.classifier.parameters())
    assert not any(p.requires_grad for p in minilm.bert.embeddings.parameters())
    assert set(adapter_state_dict(minilm)) == {
        n for n, p in minilm.named_parameters() if "lora_" in n or n.startswith("classifier.")
    }


def test_full_dotted_pattern(minilm):
    report = inject(
        minilm, "lora", targets=("bert.encoder.layer.*.attention.self.query",), rank=2, alpha=4
    )
    assert len(report.wrapped) == 6
    with pytest.raises(InjectError, match="matches no module"):
        inject(minilm, "lora", targets=("encoder.layer.*.attention.self.key",), rank=2, alpha=4)


@pytest.mark.parametrize("pattern", ["quer", "nothing_here", "query_proj", "Query"])
def test_pattern_matching_nothing_raises(minilm, pattern):
    with pytest.raises(InjectError) as info:
        inject(minilm, "lora", targets=(pattern,), rank=2, alpha=4)
    assert repr(pattern) in str(info.value) and "query" in str(info.value)


def test_injection_errors_leave_model_untouched(minilm):
    requires = {n: p.requires_grad for n, p in minilm.named_parameters()}
    with pytest.raises(InjectError, match="'attention'.*BertAttention"):
        inject(minilm, "lora", targets=("attention",), rank=2, alpha=4)
    with pytest.raises(InjectError, match="nope"):
        inject(minilm, "lora", targets=("query", "nope"), rank=2, alpha=4)
    with pytest.raises(InjectError, match="trainable pattern 'head'"):
        inject(minilm, "lora", targets=("query",), rank=2, alpha=4, trainable=("head",))
    with pytest.raises(InjectError, match="string"):
        inject(minilm, "lora", targets="query", rank=2, alpha=4)
    assert adapter_layers(minilm) == []
    assert requires == {n: p.requires_grad for n, p in minilm.named_parameters()}


def test_already_wrapped_raises(minilm):
    inject(minilm, "lora", targets=("query",), rank=2, alpha=4)
    with pytest.raises(InjectError, match="already wrapped"):
        inject(minilm, "rslora", targets=("query",), rank=2, alpha=4)
    with pytest.raises(InjectError, match="already wrapped"):
        inject(minilm, "lora", targets=("base",), rank=2, alpha=4)
    with pytest.raises(InjectError, match="holds adapters"):
        inject(minilm, "lora", targets=("value",), rank=2, alpha=4, trainable=("attention",))
    # A second call for other layers keeps the first adapters trainable and never re-wraps bases.
    report = inject(minilm, "lora", targets=("value",), rank=2, alpha=4)
    assert len(report.wrapped) == 6 and len(adapter_layers(minilm)) == 12
    assert report.adapter_params == 12 * 2 * 2 * minilm.config.hidden_size
    assert all(not isinstance(m.base, AdapterLinear) for _, m in adapter_layers(minilm))


# --- adapter state dict -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_adapter_state_dict_round_trip(variant, minilm_master, batch):
    kwargs = dict(targets=("query", "value"), rank=4, alpha=8, trainable=("classifier",))
    trained, fresh = copy.deepcopy(minilm_master), copy.deepcopy(minilm_master)
    inject(trained, variant, **kwargs)
    inject(fresh, variant, **kwargs)
    randomise(trained)
    with torch.no_grad():
        trained.classifier.weight.add_(1.0)
    state = adapter_state_dict(trained)
    adapter_keys = {
        f"{n}.{pn}"
        for n, layer in adapter_layers(trained)
        for pn, _ in layer.adapter_named_parameters()
    } | {n for n, _ in trained.named_parameters() if n.startswith(f"{SHARED_ATTR}.")}
    assert set(state) == adapter_keys | {"classifier.weight", "classifier.bias"}
    load_adapter_state_dict(fresh, state)
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, trained(**batch).logits)
    extra = dict(state, **{"bert.pooler.dense.weight": torch.zeros(1)})
    with pytest.raises(AdapterStateError, match="unexpected"):
        load_adapter_state_dict(fresh, extra)
    missing = dict(state)
    missing.pop("classifier.bias")
    with pytest.raises(AdapterStateError, match="missing"):
        load_adapter_state_dict(fresh, missing)
    if get_variant(variant).merges:
        merge_adapters(fresh)
        with pytest.raises(AdapterStateError, match="unmerge"):
            load_adapter_state_dict(fresh, state)


# --- registry -----------------------------------------------------------------------------------
def test_registry_contents():
    assert sorted(VARIANTS) == VARIANTS and {"lora", "rslora"} <= set(VARIANTS)
    assert get_variant("lora").family == "baseline"
    assert get_variant("rslora").family == "optimization"
    for name in VARIANTS:
        spec = get_variant(name)
        assert spec.name == name and spec.family in FAMILIES
        assert spec.params_cls is spec.layer_cls.params_cls
        assert isinstance(build_params(name, None), spec.params_cls)


def test_unknown_variant_suggests_the_closest_name():
    with pytest.raises(UnknownVariantError, match="did you mean 'dora'") as info:
        get_variant("dora-ish")
    assert isinstance(info.value, ValueError) and "lorabench variants lists all" in str(info.value)
    with pytest.raises(UnknownVariantError):
        inject(nn.Sequential(nn.Linear(2, 2)), "nope", targets=("0",), rank=1, alpha=1)


def test_build_params_rejects_unknown_field():
    with pytest.raises(InvalidVariantParams, match="foo"):
        build_params("lora", {"foo": 1})
    with pytest.raises(InvalidVariantParams, match="foo"):
        inject(nn.Sequential(nn.Linear(2, 2)), "lora", targets=("0",), rank=1, alpha=1,
               params={"foo": 1})  # fmt: skip


def test_register_rejects_duplicates_and_bad_specs():
    spec = get_variant("lora")
    with pytest.raises(ValueError, match="already registered"):
        register(spec)
    with pytest.raises(ValueError, match="family"):
        dataclasses.replace(spec, info=dataclasses.replace(spec.info, family="misc"))
    with pytest.raises(ValueError, match="variant_name"):
        dataclasses.replace(spec, info=dataclasses.replace(spec.info, name="other"))
