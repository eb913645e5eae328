"""The process that trains one job. It talks to its supervisor only through `events`."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import traceback
from pathlib import Path
from typing import Any

# Failures that may pass if the job runs again (another GPU, more free memory, disk freed).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (MemoryError, OSError, ConnectionError)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us if our parent goes, so a killed worker leaves no trainer behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _is_transient(error: BaseException) -> bool:
    import torch

    return isinstance(error, (*TRANSIENT_ERRORS, torch.cuda.OutOfMemoryError))


def run_child(
    config: dict[str, Any],
    out_dir: str,
    device: str,
    checkpoint_every: int,
    supervisor_pid: int,
    events: Any,
) -> None:
    """Entry point of the training process: sends progress, then exactly one final event."""
    # Ctrl-C reaches the whole process group; only the supervisor decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _die_with_parent()

    def should_stop() -> bool:
        try:
            os.kill(supervisor_pid, 0)
        except ProcessLookupError:
            os._exit(1)  # orphaned: a new worker may already own the job; write nothing
        return stop.is_set()

    from lorabench.config import ConfigError, JobConfig
    from lorabench.tasks.sources import DataSourceError
    from lorabench.train import DeterministicFailure, Interrupted, train_job

    try:
        cfg = JobConfig(**config)
        result = train_job(
            cfg,
            Path(out_dir),
            device=device,
            on_progress=lambda event: events.put(("progress", event)),
            should_stop=should_stop,
            checkpoint_every=checkpoint_every,
        )
        events.put(
            ("done", {"metrics": result.metrics, "resumed_from_step": result.resumed_from_step})
        )
    except Interrupted as interrupted:
        events.put(("interrupted", {"step": interrupted.step}))
    except (DeterministicFailure, ConfigError, DataSourceError) as error:
        events.put(("error", {"transient": False, "message": str(error)}))
    except BaseException as error:  # noqa: BLE001  (every failure must reach the supervisor)
        summary = "".join(traceback.format_exception(error, limit=-3)).strip()
        events.put(("error", {"transient": _is_transient(error), "message": summary[-4000:]}))
    finally:
        events.close()
        events.join_thread()
