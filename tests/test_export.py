"""`lorabench export`: a trained job's adapter loads into PEFT (or back into lorabench)."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import JobConfig
from lorabench.store import claim, finish, open_engine, register_worker, set_out_dir
from lorabench.tasks.models import MINILM, resolve_model
from lorabench.train import train_job
from lorabench.train.export import export_job
from lorabench.train.loop import PREPARED_NAME, build_model
from lorabench.variants import (
    build_params,
    get_variant,
    load_adapter_extra_state,
    load_adapter_state_dict,
    variant_names,
)
from lorabench.variants.peft_export import NATIVE_CONFIG, load_native

TINY = ["--task", "bbc-news", "--batch-size", "8", "--max-length", "32", "--train-size", "16",
        "--eval-size", "16", "--epochs", "1", "--lr", "1e-2", "--rank", "4"]  # fmt: skip


def run_one_job(tmp_path: Path, variant: str, *extra: str) -> tuple[str, JobConfig]:
    """Plan one tiny job and train it as a worker would; returns (db, config)."""
    db = str(tmp_path / "x.db")
    args = ["plan", "--db", db, "--variant", variant, *TINY, *extra]
    assert CliRunner().invoke(app, args).exit_code == 0
    engine = open_engine(db)
    claimed = claim(engine, register_worker(engine, "cpu"), lease_seconds=600)
    run_dir = tmp_path / "run"
    set_out_dir(engine, claimed.job_id, claimed.lease_token, str(run_dir))
    cfg = JobConfig(**claimed.config)
    train_job(cfg, run_dir)
    finish(engine, claimed, [])
    engine.dispose()
    return db, cfg


def trained_logits(cfg: JobConfig, run_dir: Path, batch: dict) -> torch.Tensor:
    torch.manual_seed(cfg.seed)
    _, model, _ = build_model(cfg)
    if (run_dir / PREPARED_NAME).exists():
        state = torch.load(run_dir / PREPARED_NAME, weights_only=True)
        get_variant(cfg.variant).restore(
            model, state, build_params(cfg.variant, cfg.variant_params)
        )
    checkpoint = torch.load(run_dir / "checkpoint.pt")
    load_adapter_state_dict(model, checkpoint["adapter"])
    load_adapter_extra_state(model, checkpoint["adapter_extra"])
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lora", "eva"])  # EVA: prepared ranks must be restored
def test_peft_export_loads_into_peft_with_identical_outputs(variant, tmp_path: Path, batch):
    peft = pytest.importorskip("peft")
    db, cfg = run_one_job(tmp_path, variant)
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", "1", "--format", "peft", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    # The base is recorded as the job named it (the hub name), not the folder it resolved to.
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["task_type"]) == (MINILM, "SEQ_CLS")
    local = resolve_model(MINILM)
    assert local != MINILM
    assert [f.name for f in out.iterdir() if local in f.read_text(errors="replace")] == []
    # Off the hub, the user passes the base model: it loads and gives our outputs.
    task, _, _ = build_model(cfg)
    loaded = peft.PeftModel.from_pretrained(task.load_model(), str(out)).eval()
    with torch.no_grad():
        theirs = loaded(**batch).logits
    ours = trained_logits(cfg, tmp_path / "run", batch)
    assert (theirs - ours).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_variant_without_peft_falls_back_to_the_native_format(tmp_path: Path, batch):
    # ReLoRA has no PEFT equivalent and rewrites its base weights: the hardest native case.
    db, cfg = run_one_job(tmp_path, "relora", "--train-size", "32",
                          "--set", "variant_params={restarts = 1}")  # fmt: skip
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt")
    torch.manual_seed(cfg.seed)
    untouched = dict(build_model(cfg)[1].named_parameters())
    rewritten = [k for k, v in checkpoint["adapter_extra"].items()
                 if k.endswith("base.weight") and not torch.equal(v, untouched[k])]  # fmt: skip
    assert rewritten  # the merge changed the base weights, so the export must carry them
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", "1", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert "has no equivalent" in result.output and "native format" in result.output
    saved = json.loads((out / NATIVE_CONFIG).read_text())
    assert JobConfig(**saved["job"]) == cfg
    torch.manual_seed(cfg.seed)
    _, model, _ = build_model(cfg)
    load_native(model, out)
    with torch.no_grad():
        restored = model.eval()(**batch).logits
    assert torch.equal(restored, trained_logits(cfg, tmp_path / "run", batch))


def test_export_errors_are_clear(tmp_path: Path):
    db = str(tmp_path / "x.db")
    CliRunner().invoke(app, ["plan", "--db", db, "--variant", "lora", *TINY])
    missing = CliRunner().invoke(app, ["export", "7", str(tmp_path / "o"), "--db", db])
    assert missing.exit_code == 2 and "no job with id 7" in missing.output
    queued = CliRunner().invoke(app, ["export", "1", str(tmp_path / "o"), "--db", db])
    assert queued.exit_code == 2 and "has not started yet" in queued.output
    cfg = JobConfig(**_first_config(db))
    with pytest.raises(ValueError, match="no checkpoint"):
        export_job(cfg, tmp_path / "nothing", tmp_path / "o")
    with pytest.raises(ValueError, match="--format 'onnx'"):
        export_job(cfg, tmp_path / "nothing", tmp_path / "o", fmt="onnx")


def _first_config(db: str) -> dict:
    from sqlalchemy import select

    from lorabench.store.models import Job

    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        config = conn.execute(select(Job.config)).scalar_one()
    engine.dispose()
    return json.loads(config)


def test_variants_command_lists_every_variant_with_its_family():
    result = CliRunner().invoke(app, ["variants"], terminal_width=200)
    assert result.exit_code == 0
    for name in variant_names():
        assert name in result.output
        assert get_variant(name).family in result.output


def test_tasks_command_lists_every_task_and_shows_one_in_full():
    from lorabench.tasks import task_names

    listing = CliRunner().invoke(app, ["tasks"])
    assert listing.exit_code == 0
    assert all(name in listing.output for name in task_names())  # names never wrap
    detail = CliRunner().invoke(app, ["tasks", "bbc-news"])
    assert detail.exit_code == 0
    assert "accuracy, macro_f1" in detail.output
    assert "default max_length" in detail.output and "128" in detail.output
    unknown = CliRunner().invoke(app, ["tasks", "no-such-task"])
    assert unknown.exit_code == 2 and "unknown task 'no-such-task'" in unknown.output
