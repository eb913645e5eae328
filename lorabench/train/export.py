"""Export a job's trained adapter in a form other tools load: PEFT's format (where PEFT has
the variant), the base model with the adapter merged in (where the variant merges), or
lorabench's own; each with a README.md model card."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorabench import __version__
from lorabench.config import JobConfig
from lorabench.train.card import (
    EXPORT_RECORD,
    ExportFacts,
    JobRecord,
    export_record,
    render_card,
)
from lorabench.train.checkpoint import load_checkpoint
from lorabench.train.loop import PREPARED_NAME, build_model
from lorabench.variants import (
    build_params,
    get_variant,
    load_adapter_extra_state,
    load_adapter_state_dict,
)
from lorabench.variants.peft_export import (
    save_merged,
    save_native,
    save_peft,
    save_tokenizer,
    to_peft,
)

FORMATS = ("peft", "merged", "native")
CARD = "README.md"


class ExportError(ValueError):
    pass


@dataclass
class Exported:
    format: str
    written: list[Path] = field(default_factory=list)
    note: str = ""


def working_formats(variant: str) -> list[str]:
    """The export formats `variant` supports (native always does)."""
    spec = get_variant(variant)
    return [f for f in FORMATS if f == "native" or getattr(spec, "merges" if f == "merged" else f)]


def export_job(
    cfg: JobConfig,
    run_dir: Path,
    out_dir: Path,
    *,
    fmt: str = "peft",
    job: JobRecord | None = None,
) -> Exported:
    """Rebuild the job's model from its checkpoint and write it in `fmt`, with a model card."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if fmt == "merged" and not get_variant(cfg.variant).merges:
        raise ExportError(
            f"--format merged: {cfg.variant!r} does not merge into the base weights (its update "
            "depends on the input, not only on fixed weights); formats that work for it: "
            f"{', '.join(working_formats(cfg.variant))}"
        )
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is None:
        raise ExportError(
            f"no checkpoint in {run_dir}; the job has not trained on this machine "
            "(checkpoints stay where the job ran)"
        )
    if checkpoint.get("config_hash") != cfg.config_hash:
        raise ExportError(f"the checkpoint in {run_dir} belongs to another job config")
    torch.manual_seed(cfg.seed)  # frozen random bases (VeRA, RandLoRA) come from their seeds
    task, model, _ = build_model(cfg)
    spec, hyper = get_variant(cfg.variant), build_params(cfg.variant, cfg.variant_params)
    prepared = run_dir / PREPARED_NAME
    if spec.restore is not None and prepared.exists():  # data-driven init (EVA's ranks ...)
        spec.restore(model, torch.load(prepared, weights_only=True), hyper)
    load_adapter_state_dict(model, checkpoint["adapter"])
    load_adapter_extra_state(model, checkpoint["adapter_extra"])  # rewritten bases, masks
    model.eval()
    step = int(checkpoint["step"])
    kind = task_type(model)
    facts = ExportFacts(fmt, step, kind, labels(model) if kind == "SEQ_CLS" else None)
    tokenizer = getattr(task, "tokenizer", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = ""
    if fmt == "merged":
        if not hasattr(model, "save_pretrained"):
            raise ExportError(
                f"--format merged writes a transformers model; task {cfg.task!r} builds a "
                f"{type(model).__name__}: use --format native" + (" or peft" if spec.peft else "")
            )
        written = save_merged(model, out_dir, base_name=cfg.model, tokenizer=tokenizer)
    elif fmt == "peft" and spec.peft:
        peft_model = to_peft(
            model,
            task.load_model,
            cfg.variant,
            rank=cfg.rank,
            alpha=cfg.alpha,
            dropout=cfg.dropout,
            params=hyper,
            task_type=kind,
            base_name=cfg.model,
        )
        written = save_peft(peft_model, out_dir)
        if tokenizer is not None:  # AutoPeftModel* and users read it from the adapter folder
            written += save_tokenizer(tokenizer, out_dir)
    else:
        if fmt == "peft":
            note = (
                f"PEFT has no equivalent of {cfg.variant!r}; wrote lorabench's native format "
                "(safetensors + JSON config) instead"
                + ("; --format merged writes a plain transformers model" if spec.merges else "")
            )
            facts = ExportFacts("native", step, kind, facts.labels)
        native = {"lorabench_version": __version__, "step": step,
                  "job": cfg.model_dump(mode="json")}  # fmt: skip
        written = save_native(model, native, out_dir)
    return Exported(
        facts.format, written + _describe(cfg, facts, job or JobRecord(), out_dir), note
    )


def task_type(model: nn.Module) -> str | None:
    """PEFT's task type for a transformers model, by its head; None for anything else (an
    image classifier, a hand-built network), which PeftModel loads without a task type."""
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    return None


def labels(model: nn.Module) -> dict[str, Any]:
    """The keyword arguments that give a freshly loaded base this classifier's head."""
    config = model.config
    found: dict[str, Any] = {
        "num_labels": int(config.num_labels),
        "id2label": {str(i): name for i, name in sorted(config.id2label.items())},
        "label2id": {name: int(i) for name, i in config.label2id.items()},
    }
    if getattr(config, "problem_type", None):
        found["problem_type"] = config.problem_type
    return found


def _describe(cfg: JobConfig, facts: ExportFacts, job: JobRecord, out_dir: Path) -> list[Path]:
    """The model card, and for PEFT and merged exports its machine-readable twin."""
    written = []
    if facts.format != "native":  # native's own JSON already holds the job
        record = out_dir / EXPORT_RECORD
        record.write_text(json.dumps(export_record(cfg, facts, job), indent=2) + "\n")
        written.append(record)
    # After save_pretrained, which writes a card of its own (naming the local base folder).
    card = out_dir / CARD
    card.write_text(render_card(cfg, facts, job), encoding="utf-8")
    return [*written, card]
