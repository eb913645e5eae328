"""The process that trains one job. It talks to its supervisor only through `events`."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import traceback
from collections.abc import Callable
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


def _setup_child(supervisor_pid: int) -> Callable[[], bool]:
    """Signals and parent watch shared by both entry points; returns `should_stop`."""
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

    return should_stop


def _failure(error: BaseException) -> tuple[str, dict[str, Any]]:
    """The final event for a job that raised `error`: deterministic or transient."""
    from lorabench.config import ConfigError
    from lorabench.tasks.sources import DataSourceError
    from lorabench.train import DeterministicFailure

    if isinstance(error, (DeterministicFailure, ConfigError, DataSourceError)):
        return "error", {"transient": False, "message": str(error)}
    summary = "".join(traceback.format_exception(error, limit=-3)).strip()
    return "error", {"transient": _is_transient(error), "message": summary[-4000:]}


def _done(result: Any) -> tuple[str, dict[str, Any]]:
    return "done", {"metrics": result.metrics, "resumed_from_step": result.resumed_from_step}


def _report(events: Any, work: Callable[[], tuple[str, dict[str, Any]]]) -> None:
    """Run `work` and send its final event, or the interruption or failure that ended it."""
    from lorabench.train import Interrupted

    try:
        events.put(work())
    except Interrupted as interrupted:
        events.put(("interrupted", {"step": interrupted.step}))
    except BaseException as error:  # noqa: BLE001  (every failure must reach the supervisor)
        events.put(_failure(error))
    finally:
        events.close()
        events.join_thread()


def run_child(
    config: dict[str, Any],
    out_dir: str,
    device: str,
    options: dict[str, Any],
    supervisor_pid: int,
    events: Any,
) -> None:
    """Entry point of the training process: sends progress, then exactly one final event.
    `options` are `train_job`'s keyword arguments for how to run (checkpoint_every, grad_ckpt,
    compile)."""
    should_stop = _setup_child(supervisor_pid)
    from lorabench.config import JobConfig
    from lorabench.train import train_job

    def work() -> tuple[str, dict[str, Any]]:
        result = train_job(
            JobConfig(**config),
            Path(out_dir),
            device=device,
            on_progress=lambda event: events.put(("progress", event)),
            should_stop=should_stop,
            **options,
        )
        return _done(result)

    _report(events, work)


def run_pack_child(
    configs: list[dict[str, Any]],
    out_dirs: list[str],
    device: str,
    options: dict[str, Any],
    supervisor_pid: int,
    events: Any,
) -> None:
    """Entry point for a pack (`work --pack`): progress tagged with the job's slot, then one
    final event: ("results", one (kind, payload) per job), or one outcome for the whole pack.
    `options` as for `run_child`; the worker refuses grad_ckpt with --pack."""
    should_stop = _setup_child(supervisor_pid)
    from lorabench.config import JobConfig
    from lorabench.train.packed import train_packed

    def work() -> tuple[str, dict[str, Any]]:
        results = train_packed(
            [JobConfig(**config) for config in configs],
            [Path(out_dir) for out_dir in out_dirs],
            device=device,
            on_progress=lambda slot, event: events.put(("progress", {**event, "slot": slot})),
            should_stop=should_stop,
            checkpoint_every=options["checkpoint_every"],
            compile=options["compile"],
        )
        outcomes = [_failure(r) if isinstance(r, BaseException) else _done(r) for r in results]
        return "results", {"outcomes": outcomes}

    _report(events, work)
