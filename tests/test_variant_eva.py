"""EVA: incremental SVD of layer inputs, A = top components, ranks redistributed (§II-D3)."""

import copy
import io

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    PrepareContext,
    adapter_layers,
    adapter_parameters,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants._activations import stream_layer_inputs
from lorabench.variants.eva import (
    EvaLinear,
    EvaParams,
    IncrementalSVD,
    allocate_ranks,
)
from lorabench.variants.peft_export import to_peft

SPEC = get_variant("eva")
RANK = 4


def test_defaults_are_the_papers():
    # Paper's hyperparameter list: 64 activation estimation steps, threshold 0.9; PEFT: rho 2.
    assert EvaParams() == EvaParams(steps=64, tau=0.9, rho=2.0)
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft
    assert SPEC.prepare is not None and SPEC.restore is not None and SPEC.report is not None
    for bad in ({"tau": 1.5}, {"rho": 0.5}, {"steps": 0}):
        with pytest.raises(InvalidVariantParams):
            build_params("eva", bad)


def test_allocation_hand_computed():
    ratios = {
        "a": torch.tensor([0.5, 0.3, 0.1]),
        "b": torch.tensor([0.4, 0.2]),
        "c": torch.tensor([0.05]),
    }
    # Largest four: 0.5 (a), 0.4 (b), 0.3 (a), 0.2 (b).
    assert allocate_ranks(ratios, 4) == {"a": 2, "b": 2, "c": 0}
    assert allocate_ranks(ratios, 6) == {"a": 3, "b": 2, "c": 1}
    assert allocate_ranks(ratios, 99) == {"a": 3, "b": 2, "c": 1}  # no more than exist
    # A tie goes to the earlier layer (PEFT sorts the same way).
    tied = {"q": torch.tensor([0.3, 0.1]), "k": torch.tensor([0.3, 0.1])}
    assert allocate_ranks(tied, 3) == {"q": 2, "k": 1}


def test_hand_computed_delta_after_rank_change():
    layer = EvaLinear(nn.Linear(3, 2), rank=2, alpha=4.0)
    layer.set_components(torch.tensor([[1.0, 0.0, 2.0]]))
    assert layer.rank == 1 and layer.budget_rank == 2
    assert torch.count_nonzero(layer.lora_B) == 0 and tuple(layer.lora_B.shape) == (2, 1)
    # s = alpha / r with the job's r = 2 (PEFT's adjust_scaling_factors), not the new rank 1.
    assert layer.scaling == 2.0
    with torch.no_grad():
        layer.lora_B.copy_(torch.tensor([[1.0], [3.0]]))
    expected = torch.tensor([[2.0, 0.0, 4.0], [6.0, 0.0, 12.0]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        # A x = 1 + 1 = 2; B (A x) = [2, 6]; times s = 2.
        assert torch.allclose(layer(x) - layer.base(x), torch.tensor([[4.0, 12.0]]))
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == EvaLinear.expected_param_count(3, 2, 1) == 5


def test_rank_zero_layer_is_its_base():
    layer = EvaLinear(nn.Linear(4, 3), rank=2, alpha=4.0)
    layer.set_components(torch.zeros(0, 4))
    x = torch.randn(5, 4, requires_grad=True)
    out = layer(x)
    assert torch.equal(out, layer.base(x))
    assert torch.count_nonzero(layer.delta_weight()) == 0 and layer.delta_weight().shape == (3, 4)
    out.sum().backward()
    assert x.grad is not None
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 0


def _spectrum_data(n_batches, rows, dim, decay, seed, shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=gen)).Q
    scales = decay ** torch.arange(float(dim))
    return [
        (torch.randn(rows, dim, generator=gen) * scales) @ rotation.T + shift
        for _ in range(n_batches)
    ]


def test_incremental_svd_matches_exact_pca():
    chunks = _spectrum_data(30, 40, 60, 0.8, seed=0, shift=3.0)
    chunks.insert(0, chunks[0][:3])  # smaller than k: pooled with the next batch
    svd = IncrementalSVD(8, tau=0.9)
    for chunk in chunks:
        svd.add(chunk)
    x = torch.cat(chunks).double()
    centred = x - x.mean(0)  # PCA: EVA's incremental SVD centres the activations
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    cos = (svd.components.double() @ vh[:8].T).diagonal().abs()
    assert cos.min() > 0.999
    exact_ratio = s[:8] ** 2 / centred.square().sum()
    # Truncating to k components after every step loses a little of the smallest ones.
    assert torch.allclose(svd.ratio.double()[:3], exact_ratio[:3], rtol=1e-4)
    assert torch.allclose(svd.ratio.double(), exact_ratio, rtol=1e-2)
    assert svd.updates == 30 and svd.n == x.shape[0]
    # Signs are fixed: the largest-magnitude entry of every component is positive.
    top = svd.components.abs().argmax(dim=1)
    assert (svd.components.gather(1, top.unsqueeze(1)) > 0).all()


def test_convergence_threshold_is_the_component_similarity():
    chunks = _spectrum_data(40, 50, 30, 0.7, seed=1)
    svd = IncrementalSVD(4, tau=0.9)
    svd.add(chunks[0])
    assert not svd.converged(4) and svd.converged(0)  # nothing to compare with yet
    previous = svd.components.clone()
    svd.add(chunks[1])
    cos = torch.nn.functional.cosine_similarity(svd.components, previous, dim=1).abs()
    assert torch.allclose(svd.similarity, cos)
    assert svd.converged(4) == bool((cos >= 0.9).all())
    assert svd.settled(2) == pytest.approx(float(cos[:2].min()))


# --- a two-layer model whose inputs have very different spectra --------------------------------
class Two(nn.Module):
    """Layer a sees a steep spectrum (one direction explains ~99%), b a flat one."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 5)
        self.b = nn.Linear(16, 5)

    def forward(self, x):
        return self.a(x[:, :12].contiguous()) + self.b(x[:, 12:].contiguous())


def two_data(n=20):
    gen = torch.Generator().manual_seed(1)
    scales = torch.cat([0.1 ** torch.arange(12.0), 0.9 ** torch.arange(16.0)])
    return [{"x": torch.randn(64, 28, generator=gen) * scales} for _ in range(n)]


def context(model, data, **params):
    def batches(n):
        for i in range(n):
            yield data[i % len(data)]

    return PrepareContext(
        model,
        batches,
        lambda m, b: m(b["x"]).sum(),
        build_params("eva", params),
        torch.device("cpu"),
    )


def test_ranks_follow_explained_variance_and_match_peft():
    peft_eva = pytest.importorskip("peft.tuners.lora.eva")
    from peft import EvaConfig, LoraConfig

    torch.manual_seed(0)
    net, data = Two(), two_data()
    ours = copy.deepcopy(net)
    inject(ours, "eva", targets=("a", "b"), rank=2, alpha=4)
    state = SPEC.prepare(context(ours, data))
    # Budget 2 x 2: a's first component (~0.99) and three of b's (0.2, 0.17, 0.13) beat a's
    # second (~0.01).
    assert state["ranks"] == {"a": 1, "b": 3} and state["budget"] == 4
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["a", "b"], init_lora_weights="eva",
                        eva_config=EvaConfig(tau=0.9))  # fmt: skip
    theirs = peft_eva.get_eva_state_dict(
        copy.deepcopy(net), data, config, forward_fn=lambda m, b: m(b["x"]),
        prepare_model_inputs_fn=None, prepare_layer_inputs_fn=None, show_progress_bar=False,
    )  # fmt: skip
    assert {k: v.shape[0] for k, v in theirs.items()} == state["ranks"]
    for name in ("a", "b"):
        ours_a = ours.get_submodule(name).lora_A.detach().double()
        cos = (ours_a @ theirs[name].double().T).diagonal().abs()
        assert cos.min() > 0.999, name


def test_threshold_respected():
    data = two_data(40)
    runs = {}
    for tau in (0.9, 0.99999):
        model = Two()
        inject(model, "eva", targets=("a", "b"), rank=2, alpha=4)
        runs[tau] = SPEC.prepare(context(model, data, steps=40, tau=tau))
    for tau, state in runs.items():
        for name, updates in state["updates"].items():
            settled = state["similarity"][name]
            if updates < 40:  # stopped early: its components had converged to tau
                assert settled >= tau, (tau, name)
            else:
                assert settled < tau or updates == 40
    loose, strict = runs[0.9], runs[0.99999]
    assert max(loose["updates"].values()) < 40  # 0.9 converges within the 40 steps
    assert sum(strict["updates"].values()) > sum(loose["updates"].values())
    assert all(strict["updates"][n] >= loose["updates"][n] for n in loose["updates"])


def test_prepare_is_deterministic_and_state_loads_with_weights_only():
    states = []
    for _ in range(2):
        model = Two()
        inject(model, "eva", targets=("a", "b"), rank=2, alpha=4)
        states.append(SPEC.prepare(context(model, two_data(), steps=8)))
    buffer = io.BytesIO()
    torch.save(states[0], buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["ranks"] == states[1]["ranks"]
    for name in loaded["A"]:
        assert torch.equal(loaded["A"][name], states[1]["A"][name])


# --- MiniLM: 37 adapted layers -------------------------------------------------------------------
def minilm_batches(n, size=4, length=16):
    for i in range(n):
        gen = torch.Generator().manual_seed(100 + i)
        ids = torch.randint(1000, 20000, (size, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0
        yield {"input_ids": ids, "attention_mask": mask, "labels": torch.zeros(size).long()}


def minilm_ctx(model, **params):
    return PrepareContext(
        model, minilm_batches, lambda m, b: m(**b).loss, build_params("eva", params),
        torch.device("cpu"),
    )  # fmt: skip


TARGETS = ("query", "key", "value", "dense")


@pytest.fixture(scope="module")
def prepared(minilm_master):
    model = copy.deepcopy(minilm_master)
    inject(model, "eva", targets=TARGETS, rank=RANK, alpha=8, trainable=("classifier",))
    state = SPEC.prepare(minilm_ctx(model, steps=8))
    return model, state


def test_minilm_ranks_sum_to_the_budget(prepared):
    model, state = prepared
    layers = adapter_layers(model)
    assert len(layers) == 37 and state["budget"] == 37 * RANK
    ranks = {name: layer.rank for name, layer in layers}
    assert ranks == state["ranks"]
    assert sum(ranks.values()) == 37 * RANK
    assert max(ranks.values()) <= round(2.0 * RANK)
    assert len(set(ranks.values())) > 1  # the budget really moved between layers
    report = SPEC.report(model, build_params("eva", None))
    assert report["rank_total"] == 37 * RANK
    assert all(report[f"rank/{name}"] == rank for name, rank in ranks.items())


def test_minilm_init_is_orthonormal_components_and_zero_update(prepared, minilm_master, batch):
    model, _ = prepared
    for name, layer in adapter_layers(model):
        a = layer.lora_A.detach()
        assert torch.allclose(a @ a.T, torch.eye(layer.rank), atol=1e-4), name
        assert torch.count_nonzero(layer.lora_B) == 0
    # query, key and value read the same input: one SVD, so their components agree.
    block = model.bert.encoder.layer[0].attention.self
    k = min(block.query.rank, block.key.rank, block.value.rank)
    assert torch.equal(block.query.lora_A[:k], block.key.lora_A[:k])
    assert torch.equal(block.query.lora_A[:k], block.value.lora_A[:k])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, minilm_master(**batch).logits)


def test_minilm_param_count_follows_the_allocation(prepared):
    model, _ = prepared
    count = sum(p.numel() for p in adapter_parameters(model))
    expected = sum(
        EvaLinear.expected_param_count(layer.in_features, layer.out_features, layer.rank)
        for _, layer in adapter_layers(model)
    )
    assert count == expected == SPEC.report(model, None)["eva_adapter_params"]
    # Not the uniform count: the big 1536-wide layers did not get exactly r each.
    uniform = sum(
        RANK * (layer.in_features + layer.out_features) for _, layer in adapter_layers(model)
    )
    assert count != uniform


def test_restore_reproduces_the_prepared_model(prepared, minilm_master, batch):
    model, state = prepared
    fresh = copy.deepcopy(minilm_master)
    inject(fresh, "eva", targets=TARGETS, rank=RANK, alpha=8, trainable=("classifier",))
    SPEC.restore(fresh, state, build_params("eva", None))
    ours = dict(adapter_layers(model))
    for name, layer in adapter_layers(fresh):
        assert layer.rank == ours[name].rank
        assert torch.equal(layer.lora_A, ours[name].lora_A)
        assert torch.equal(layer.lora_B, ours[name].lora_B)
        assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    trained, restored = copy.deepcopy(model), fresh
    randomise(trained)
    randomise(restored)
    with torch.no_grad():
        assert torch.equal(trained(**batch).logits, restored(**batch).logits)
    with pytest.raises(ValueError, match="does not fit"):
        SPEC.restore(fresh, {"A": {"nope": torch.zeros(1, 1)}}, None)


def test_query_key_value_form_one_input_group(minilm_master):
    model = copy.deepcopy(minilm_master).train()
    inject(model, "eva", targets=TARGETS, rank=2, alpha=4)
    seen = []
    groups = stream_layer_inputs(
        model, minilm_batches(1), lambda b: model(**b), lambda name, rows, seq: seen.append(rows)
    )
    assert len(groups) == 6 * 4 + 1  # per block: qkv, attention out, intermediate, output; pooler
    qkv = groups["bert.encoder.layer.0.attention.self.query"]
    assert qkv == [f"bert.encoder.layer.0.attention.self.{n}" for n in ("query", "key", "value")]
    # Padding is dropped: 4 sequences x 16 tokens, half of the first one masked.
    assert seen[0].shape == (4 * 16 - 8, 384)
    assert seen[-1].shape == (4, 384)  # the pooler sees one [CLS] vector per sequence
    assert model.training  # the model's mode is put back


def test_peft_export_with_redistributed_ranks(prepared, minilm_master, batch, tmp_path):
    peft = pytest.importorskip("peft")
    model, state = prepared
    model = copy.deepcopy(model)
    # Smaller noise than the helper's 0.3: with that, rank-8 adapters put out ~100x the base
    # layer's output, and float32 rounding of differently shaped matmuls alone reaches 1e-4.
    randomise(model, scale=0.03)
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        assert (expected - minilm_master(**batch).logits).abs().max() > 1e-3
    theirs = to_peft(model, lambda: copy.deepcopy(minilm_master), "eva", rank=RANK, alpha=8,
                     dropout=0.0, params=build_params("eva", None))  # fmt: skip
    theirs.eval()
    with torch.no_grad():
        assert (theirs(**batch).logits - expected).abs().max().item() <= 1e-5
    theirs.save_pretrained(str(tmp_path))
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(minilm_master), str(tmp_path)).eval()
    with torch.no_grad():
        assert (loaded(**batch).logits - expected).abs().max().item() <= 1e-5
