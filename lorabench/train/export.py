"""Export a job's trained adapter: PEFT's format where PEFT has the variant, else our own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lorabench import __version__
from lorabench.config import JobConfig
from lorabench.train.checkpoint import load_checkpoint
from lorabench.train.loop import PREPARED_NAME, build_model
from lorabench.variants import (
    build_params,
    get_variant,
    load_adapter_extra_state,
    load_adapter_state_dict,
)
from lorabench.variants.peft_export import save_native, save_peft, to_peft

FORMATS = ("peft", "native")


class ExportError(ValueError):
    pass


@dataclass
class Exported:
    format: str
    written: list[Path] = field(default_factory=list)
    note: str = ""


def export_job(cfg: JobConfig, run_dir: Path, out_dir: Path, *, fmt: str = "peft") -> Exported:
    """Rebuild the job's model from its checkpoint and write the adapter in `fmt`."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
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
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "peft":
        if get_variant(cfg.variant).peft:
            peft_model = to_peft(
                model,
                task.load_model,
                cfg.variant,
                rank=cfg.rank,
                alpha=cfg.alpha,
                dropout=cfg.dropout,
                params=hyper,
            )
            return Exported("peft", save_peft(peft_model, out_dir))
        note = (
            f"PEFT has no equivalent of {cfg.variant!r}; "
            "wrote lorabench's native format (safetensors + JSON config) instead"
        )
    else:
        note = ""
    config = {
        "lorabench_version": __version__,
        "step": int(checkpoint["step"]),
        "job": cfg.model_dump(mode="json"),
    }
    return Exported("native", save_native(model, config, out_dir), note)
