"""Choosing the device a worker trains on."""

from __future__ import annotations

import torch


def pick_device(gpu: str | None) -> tuple[str, str | None]:
    """The torch device for `--gpu` ("cpu", an index, or None for the first GPU if any).

    Returns (device, warning); the warning says why a requested GPU is not used.
    """
    if gpu is None:
        return ("cuda:0", None) if torch.cuda.is_available() else ("cpu", None)
    if gpu.strip().lower() == "cpu":
        return "cpu", None
    if not gpu.strip().isdigit():
        raise ValueError(f"--gpu takes a GPU index (0, 1, ...) or 'cpu', not {gpu!r}")
    index = int(gpu)
    if not torch.cuda.is_available():
        return "cpu", f"--gpu {index}: CUDA is not available here, training on the CPU instead"
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--gpu {index}: this machine has {torch.cuda.device_count()} GPU(s), "
            f"indices 0..{torch.cuda.device_count() - 1}"
        )
    return f"cuda:{index}", None
