"""Atomic checkpoints: a crash mid-write leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(out_dir: Path, state: dict[str, Any], *, name: str = CHECKPOINT_NAME) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    temporary = out_dir / f".{name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Still an OSError, so the worker treats it as transient and requeues the job.
        raise OSError(
            error.errno,
            f"disk full while writing {final} ({error.strerror}); the previous checkpoint is "
            "intact and the job will resume from it once space is freed",
        ) from error
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(out_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return final


def load_checkpoint(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
