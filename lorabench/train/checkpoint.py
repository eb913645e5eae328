"""Atomic checkpoints: a crash mid-write leaves the previous checkpoint intact.

A process may install a write guard (`guard_writes`): it is asked before every checkpoint is
started and again before it replaces the previous one. The worker's trainer installs one that
exits when its worker has died, so an orphaned trainer never overwrites the checkpoint that the
job's next holder resumes from.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"

_write_guard: Callable[[], None] | None = None


def guard_writes(check: Callable[[], None] | None) -> None:
    """Call `check` before this process writes a file into a job's folder (None: no guard).
    It raises, or ends the process, when the process must not write any more."""
    global _write_guard
    _write_guard = check


def check_write() -> None:
    """Ask the write guard, if any, whether this process may still write job files."""
    if _write_guard is not None:
        _write_guard()


def save_checkpoint(out_dir: Path, state: dict[str, Any], *, name: str = CHECKPOINT_NAME) -> Path:
    check_write()
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    temporary = out_dir / f".{name}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        check_write()  # a large checkpoint takes a while: still allowed to replace the last?
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
