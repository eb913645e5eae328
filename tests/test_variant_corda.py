"""CorDA: covariance-oriented SVD of W, r components to the adapter, the rest frozen (§II-D3)."""

import copy
import io
import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    PrepareContext,
    adapter_extra_state,
    adapter_layers,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.corda import CordaLinear, CordaParams, _add_covariance, corda_factors
from lorabench.variants.peft_export import save_peft, to_peft

SPEC = get_variant("corda")
TARGETS = ("query", "key", "value", "dense")


def test_defaults_are_the_methods():
    # CorDA's calib_loader_size = 256 samples; PEFT's default corda_method = "ipm".
    assert CordaParams() == CordaParams(samples=256, mode="ipm")
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft
    assert CordaLinear.modifies_base and not CordaLinear.zero_init
    with pytest.raises(InvalidVariantParams):
        build_params("corda", {"mode": "pissa"})
    with pytest.raises(InvalidVariantParams):
        build_params("corda", {"samples": 0})


def test_hand_computed_factors():
    # W = diag(2, 1), C = diag(1, 4). Damping adds 0.01 * mean(diag C) = 0.025:
    # W C = diag(2.05, 4.025), so the largest component is the second axis, where W is only 1
    # but the data lives (a plain SVD of W, PiSSA, would pick the first).
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    c = torch.diag(torch.tensor([1.0, 4.0]))
    a, b = corda_factors(w, c, rank=1, scaling=2.0, mode="ipm")
    sign = torch.sign(b[1, 0])
    # S / s = 4.025 / 2; A = sqrt(S/s) V^T C^-1 = sqrt(2.0125) / 4.025 e2; B = sqrt(2.0125) e2.
    assert torch.allclose(a * sign, torch.tensor([[0.0, 1 / math.sqrt(8.05)]], dtype=a.dtype))
    assert torch.allclose(b * sign, torch.tensor([[0.0], [math.sqrt(2.0125)]], dtype=b.dtype))
    assert torch.allclose(2.0 * b @ a, torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=a.dtype))
    # Knowledge-preserved mode takes the smallest component instead: the first axis.
    a, b = corda_factors(w, c, rank=1, scaling=2.0, mode="kpm")
    sign = torch.sign(b[0, 0])
    assert torch.allclose(a * sign, torch.tensor([[1 / math.sqrt(1.025), 0.0]], dtype=a.dtype))
    assert torch.allclose(b * sign, torch.tensor([[math.sqrt(1.025)], [0.0]], dtype=b.dtype))
    assert torch.allclose(2.0 * b @ a, torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=a.dtype))


def test_full_rank_split_reconstructs_w():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=gen)
    x = torch.randn(40, 7, generator=gen)
    a, b = corda_factors(w, x.T @ x, rank=9, scaling=0.5)
    assert a.shape == (5, 7) and b.shape == (5, 5)  # k = min(rank, out, in)
    assert torch.allclose(0.5 * b @ a, w.double(), atol=1e-10)  # Eq. (111): W = C^-1 C W


def test_covariance_scales_each_sequence_by_its_peak():
    rows = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, -4.0]])
    sequence = torch.tensor([0, 0, 1])
    # Sequence 0 / 2 -> [[1, 0], [0, .5]]; sequence 1 / 4 -> [[0, -1]].
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.25]])
    assert torch.allclose(_add_covariance(None, rows, sequence), expected)
    assert torch.allclose(_add_covariance(expected.clone(), rows, sequence), 2 * expected)


def test_hand_computed_delta_and_residual_on_a_layer():
    layer = CordaLinear(nn.Linear(3, 2, bias=False), rank=2, alpha=4.0)
    with torch.no_grad():
        layer.base.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    b = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    layer.set_factors(a, b)
    # s B A = 2 [[1, 2, 0], [3, -1, 7]]; the base keeps W - s B A.
    delta = torch.tensor([[2.0, 4.0, 0.0], [6.0, -2.0, 14.0]])
    assert torch.allclose(layer.delta_weight(), delta)
    assert torch.allclose(layer.base.weight, torch.tensor([[-1.0, -2.0, 3.0], [-2.0, 7.0, -8.0]]))
    assert torch.equal(layer.corda_A0, a) and torch.equal(layer.corda_B0, b)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():  # the layer still computes W x = [0.5, 2]
        assert torch.allclose(layer(x), torch.tensor([[0.5, 2.0]]))


# --- against PEFT's own CorDA ---------------------------------------------------------------------
def mlp_and_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7))
    gen = torch.Generator().manual_seed(1)
    mix = torch.randn(6, 6, generator=gen)
    data = [torch.randn(1, 10, 6, generator=gen) @ mix for _ in range(12)]
    for x in data:  # PEFT scales by max(x), CorDA / we by max|x|: make them the same here
        x[0, 0, 0] = x.abs().max() + 1.0
    return net, data


def context(model, data, **params):
    def batches(n):
        for i in range(n):
            yield {"x": data[i % len(data)]}

    return PrepareContext(
        model, batches, lambda m, b: m(b["x"]).sum(), build_params("corda", params),
        torch.device("cpu"),
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["ipm", "kpm"])
def test_matches_peft_corda(mode):
    peft = pytest.importorskip("peft")
    from peft.tuners.lora.config import CordaConfig
    from peft.tuners.lora.corda import preprocess_corda

    net, data = mlp_and_data()
    ours = copy.deepcopy(net)
    inject(ours, "corda", targets=("0", "2"), rank=2, alpha=4)
    SPEC.prepare(context(ours, data, samples=12, mode=mode))
    theirs = copy.deepcopy(net)
    config = peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=["0", "2"], init_lora_weights="corda",
        corda_config=CordaConfig(corda_method=mode),
    )  # fmt: skip

    def run_model():
        for x in data:
            theirs(x)

    preprocess_corda(theirs, config, run_model=run_model)
    inner = peft.get_peft_model(theirs, config).base_model.model
    for name in ("0", "2"):
        o, t = ours.get_submodule(name), inner.get_submodule(name)
        a, b = t.lora_A["default"].weight, t.lora_B["default"].weight
        sign = torch.sign((a * o.lora_A).sum(1))  # singular vectors: up to sign
        assert (o.lora_A - a * sign[:, None]).abs().max() < 1e-5, name
        assert (o.lora_B - b * sign).abs().max() < 1e-5, name
        assert (o.base.weight - t.base_layer.weight).abs().max() < 1e-5, name


def test_prepare_uses_samples_sequences():
    net, data = mlp_and_data()
    batches = [torch.cat(data[i : i + 4]) for i in (0, 4, 8)]  # 3 batches of 4 sequences
    calls = []
    model = copy.deepcopy(net)
    inject(model, "corda", targets=("0",), rank=1, alpha=1)
    ctx = context(model, batches, samples=6)
    ctx = PrepareContext(model, ctx.batches, lambda m, b: calls.append(1) or m(b["x"]).sum(),
                         ctx.params, ctx.device)  # fmt: skip
    SPEC.prepare(ctx)
    assert len(calls) == 2  # 4 + 4 >= 6 sequences


# --- MiniLM: 37 adapted layers ------------------------------------------------------------------
def minilm_batches(n, size=4, length=16):
    for i in range(n):
        gen = torch.Generator().manual_seed(100 + i)
        ids = torch.randint(1000, 20000, (size, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0
        yield {"input_ids": ids, "attention_mask": mask, "labels": torch.zeros(size).long()}


@pytest.fixture(scope="module")
def prepared(minilm_master):
    model = copy.deepcopy(minilm_master)
    inject(model, "corda", targets=TARGETS, rank=4, alpha=8, trainable=("classifier",))
    ctx = PrepareContext(model, minilm_batches, lambda m, b: m(**b).loss,
                         build_params("corda", {"samples": 32}), torch.device("cpu"))  # fmt: skip
    state = SPEC.prepare(ctx)
    return model, state


def test_minilm_function_unchanged_at_init(prepared, minilm_master, batch):
    model, state = prepared
    assert len(state["A"]) == 37
    originals = dict(minilm_master.named_modules())
    for name, layer in adapter_layers(model):
        w = originals[name].weight
        assert not torch.equal(layer.base.weight, w), name  # the base holds the residual
        rebuilt = layer.base.weight + layer.delta_weight()
        assert (rebuilt - w).abs().max().item() <= 1e-5, name
        assert torch.count_nonzero(layer.lora_B) > 0  # a non-zero initial update
        assert torch.equal(layer.corda_A0, layer.lora_A) and torch.equal(
            layer.corda_B0, layer.lora_B
        )
    with torch.no_grad():
        diff = (model(**batch).logits - minilm_master(**batch).logits).abs().max().item()
    assert diff <= 1e-4


def test_minilm_ipm_components_carry_the_activations(prepared, minilm_master):
    # IPM's r components are the ones the data excites most: on calibration inputs they
    # produce a larger share of W x than the knowledge-preserved (smallest) ones.
    model, _ = prepared
    name = "bert.encoder.layer.2.intermediate.dense"
    layer, w = model.get_submodule(name), minilm_master.get_submodule(name).weight
    rows = []
    hook = layer.register_forward_hook(lambda m, i, o: rows.append(i[0].reshape(-1, 384)))
    with torch.no_grad():
        model(**next(minilm_batches(1)))
    hook.remove()
    x = rows[0]
    cov = x.T @ x
    a_kpm, b_kpm = corda_factors(w, cov, rank=4, scaling=layer.scaling, mode="kpm")
    ipm = (x.double() @ layer.delta_weight().double().T).norm()
    kpm = (x.double() @ (layer.scaling * b_kpm @ a_kpm).T).norm()
    assert ipm > 10 * kpm


def test_restore_reproduces_the_prepared_model(prepared, minilm_master, batch):
    model, state = prepared
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = copy.deepcopy(minilm_master)
    inject(fresh, "corda", targets=TARGETS, rank=4, alpha=8, trainable=("classifier",))
    SPEC.restore(fresh, state, build_params("corda", None))
    ours = adapter_extra_state(model)
    theirs = adapter_extra_state(fresh)  # base weights (modifies_base) and the A0/B0 buffers
    assert ours.keys() == theirs.keys() and any(k.endswith("base.weight") for k in ours)
    for key, value in ours.items():
        assert torch.equal(theirs[key], value), key
    for name, layer in adapter_layers(fresh):
        assert torch.equal(layer.lora_A, model.get_submodule(name).lora_A)
        assert torch.equal(layer.lora_B, model.get_submodule(name).lora_B)
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, model(**batch).logits)
    with pytest.raises(ValueError, match="does not fit"):
        SPEC.restore(fresh, {"A": {}, "B": {}}, None)


def test_peft_export_of_a_prepared_model_runs_on_the_original_weights(
    prepared, minilm_master, batch, tmp_path
):
    peft = pytest.importorskip("peft")
    model = copy.deepcopy(prepared[0])
    randomise(model, scale=0.03)  # trained away from the init: B A != B0 A0
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        assert (expected - minilm_master(**batch).logits).abs().max() > 1e-3
    # PEFT gets the untouched pretrained model: the residual is folded into a rank-2r LoRA.
    theirs = to_peft(model, lambda: copy.deepcopy(minilm_master), "corda", rank=4, alpha=8,
                     dropout=0.0, params=build_params("corda", None))  # fmt: skip
    layer = theirs.base_model.model.bert.encoder.layer[0].attention.self.query
    assert layer.r["default"] == 8 and layer.scaling["default"] == 2.0
    with torch.no_grad():
        assert (theirs(**batch).logits - expected).abs().max().item() <= 1e-5
    save_peft(theirs, tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(minilm_master), str(tmp_path)).eval()
    with torch.no_grad():
        assert (loaded(**batch).logits - expected).abs().max().item() <= 1e-5
