"""Export trained adapters: to PEFT's format where PEFT has the variant, merged into the base
weights where the variant merges, else our own."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from lorabench.variants.base import PeftSettings, get_variant
from lorabench.variants.inject import (
    adapter_extra_state,
    adapter_layers,
    adapter_parameters,
    adapter_state_dict,
    merge_adapters,
    unwrap_adapters,
)

NATIVE_WEIGHTS = "adapter.safetensors"
NATIVE_CONFIG = "lorabench_adapter.json"
# What PEFT adds to modules_to_save for task_type SEQ_CLS.
SEQ_CLS_HEADS = ("classifier", "score")


class NoPeftEquivalent(ValueError):
    pass


def trained_modules(model: nn.Module) -> list[str]:
    """Names of fully trained modules (a new head): trainable, but not adapter parameters."""
    adapter = {id(p) for p in adapter_parameters(model)}
    names = set()
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in adapter:
            names.add(name.rpartition(".")[0])
    return sorted(names)


def to_peft(
    model: nn.Module,
    fresh_base: Callable[[], nn.Module],
    variant: str,
    *,
    rank: int,
    alpha: float,
    dropout: float,
    params: Any,
    task_type: str | None = None,
    base_name: str | None = None,
) -> nn.Module:
    """A PEFT model on `fresh_base()` holding exactly our adapters' weights.

    `task_type` ("SEQ_CLS", "CAUSAL_LM") picks the PeftModel class that AutoPeftModel* loads;
    `base_name` is what the adapter config records as its base (the name the user gave, not
    the folder it resolved to on this machine).
    """
    import torch
    from peft import get_peft_model

    spec = get_variant(variant)
    if spec.peft_export is None:
        raise NoPeftEquivalent(f"PEFT has no equivalent of the variant {variant!r}")
    layers = adapter_layers(model)
    heads = trained_modules(model)
    settings = PeftSettings(
        targets=[name for name, _ in layers],
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        params=params,
        # A copy without the heads PeftModelForSequenceClassification adds itself (in place).
        modules_to_save=[h for h in heads if task_type != "SEQ_CLS" or h not in SEQ_CLS_HEADS],
        ranks={name: layer.rank for name, layer in layers},
    )
    config = spec.peft_export.make_config(settings)
    config.task_type = task_type
    peft_model = get_peft_model(fresh_base(), config)
    if base_name is not None:  # get_peft_model wrote the loaded folder's path here
        peft_model.peft_config["default"].base_model_name_or_path = base_name
    inner = peft_model.base_model.model
    for name, layer in layers:
        spec.peft_export.copy_weights(layer, inner.get_submodule(name))
    with torch.no_grad():
        for name in heads:
            wrapper = inner.get_submodule(name)
            wrapper.modules_to_save["default"].load_state_dict(
                model.get_submodule(name).state_dict()
            )
    return peft_model.eval()


def save_peft(peft_model: nn.Module, out_dir: Path) -> list[Path]:
    peft_model.save_pretrained(str(out_dir))
    return [out_dir / "adapter_config.json", out_dir / "adapter_model.safetensors"]


def save_merged(
    model: nn.Module, out_dir: Path, *, base_name: str, tokenizer: Any = None
) -> list[Path]:
    """The model with every adapter merged into its base weights and unwrapped, written by
    `save_pretrained` (safetensors + config.json), with `tokenizer` beside it: a plain
    transformers model, loadable by the matching AutoModel* class without lorabench.

    Changes `model` in place (its adapters are gone). A 16-bit base merges in fp32 and rounds
    once (`AdapterLinear.merge`); the whole model is then stored in that dtype, new heads
    included, which under bf16 autocast computed in it anyway.
    """
    import torch

    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"a {type(model).__name__} is not a transformers model")
    merge_adapters(model)
    unwrap_adapters(model)
    low = {p.dtype for p in model.parameters()} & {torch.bfloat16, torch.float16}
    if low:
        model.to(low.pop())
    # transformers 4 writes this into config.json (5 does not): the base as the user named it,
    # not the folder it was loaded from on this machine.
    model.config._name_or_path = base_name
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    written = [out_dir / "config.json", *sorted(out_dir.glob("*.safetensors"))]
    if tokenizer is not None:
        written += save_tokenizer(tokenizer, out_dir)
    return written


def save_tokenizer(tokenizer: Any, out_dir: Path) -> list[Path]:
    """`tokenizer.save_pretrained(out_dir)`; the files it wrote (it names some it may skip)."""
    named = {Path(name) for name in tokenizer.save_pretrained(str(out_dir))}
    return sorted(path for path in named if path.is_file())


def save_native(model: nn.Module, config: dict[str, Any], out_dir: Path) -> list[Path]:
    """Trainable weights, adapter buffers and rewritten base weights (ReLoRA, PiSSA) as
    safetensors, plus the job config that rebuilds the model."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {**adapter_state_dict(model), **adapter_extra_state(model)}
    tensors = {k: v.contiguous() for k, v in state.items()}
    save_file(tensors, str(out_dir / NATIVE_WEIGHTS))
    (out_dir / NATIVE_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return [out_dir / NATIVE_WEIGHTS, out_dir / NATIVE_CONFIG]


def peft_variants() -> Sequence[str]:
    from lorabench.variants.base import variant_names

    return [v for v in variant_names() if get_variant(v).peft]


def load_native(model: nn.Module, out_dir: Path) -> None:
    """Inverse of save_native on a freshly built model of the same job config."""
    from safetensors.torch import load_file

    from lorabench.variants.inject import load_adapter_extra_state, load_adapter_state_dict

    tensors = load_file(str(out_dir / NATIVE_WEIGHTS))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    load_adapter_state_dict(model, {k: v for k, v in tensors.items() if k in trainable})
    load_adapter_extra_state(model, {k: v for k, v in tensors.items() if k not in trainable})
