"""The process that trains one job. It talks to its supervisor only through `events`.

It must not outlive its worker: the kernel kills it when its parent (the fork server) dies,
and the fork server dies with the worker (see lifeline.py). Belt and braces: `worker_pipe`, the
read end of a pipe whose only write end the worker holds, reaches end-of-file when the worker
dies, and the child looks at it after every step, before every checkpoint and before its
result; an orphan exits there without writing anything.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorabench.errors import ConfigError, DataSourceError, DeterministicFailure, Interrupted
from lorabench.worker import lifeline
from lorabench.worker.messages import Done, Failed, Final, Notice, PackResults, Progress, Stopped

# Failures that may pass if the job runs again (another GPU, more free memory, disk freed).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (MemoryError, OSError, ConnectionError)
WORKER_GONE_EXIT = 3  # the exit status of a trainer that found its worker dead


def _is_transient(error: BaseException) -> bool:
    import torch

    return isinstance(error, (*TRANSIENT_ERRORS, torch.cuda.OutOfMemoryError))


def _setup_child(worker_pipe: Any) -> tuple[Callable[[], bool], Callable[[], None]]:
    """Signals and the worker watch shared by both entry points; returns (`should_stop`,
    `ensure_worker_alive`)."""
    from lorabench.train.checkpoint import guard_writes

    # Ctrl-C reaches the whole process group; only the supervisor decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ensure_worker_alive() -> None:
        # The worker never writes to the pipe: readable means end-of-file, the worker is gone.
        if worker_pipe.poll():
            os._exit(WORKER_GONE_EXIT)  # a new worker may already own the job: write nothing

    lifeline.die_with_parent()
    if lifeline.fork_server_pid is not None and os.getppid() != lifeline.fork_server_pid:
        os._exit(WORKER_GONE_EXIT)  # the fork server died before the request reached the kernel
    ensure_worker_alive()
    guard_writes(ensure_worker_alive)

    def should_stop() -> bool:
        ensure_worker_alive()
        return stop.is_set()

    return should_stop, ensure_worker_alive


def _failure(error: BaseException) -> Failed:
    """The final message for a job that raised `error`: deterministic or transient."""
    if isinstance(error, (DeterministicFailure, ConfigError, DataSourceError)):
        return Failed(transient=False, message=str(error))
    summary = "".join(traceback.format_exception(error, limit=-3)).strip()
    return Failed(transient=_is_transient(error), message=summary[-4000:])


def _use_threads(options: dict[str, Any]) -> dict[str, Any]:
    """Train on the worker's share of the CPU threads (`work --threads`, or its part of the
    node's CPUs under `work --gpu 0,1,...`); returns the other options. OMP_NUM_THREADS is set
    for libraries that start their own OpenMP pools later (the worker also set it before its
    fork server started, so the preloaded runtime began with it)."""
    import torch

    options = dict(options)
    threads = options.pop("threads", None)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    return options


def _done(result: Any) -> Done:
    import torch

    from lorabench.outcomes import encode_outcomes

    # Encoded (compressed) here, so the message that crosses to the worker stays small.
    outcomes = [(split, epoch, encode_outcomes(arrays)) for split, epoch, arrays in result.outcomes]
    # The threads the job trained with: its step times depend on them.
    threads = ("summary", "cpu_threads", 0, None, float(torch.get_num_threads()))
    rung = result.rung
    # A paused job reports its history so far: no summary yet.
    metrics = result.metrics if result.paused else [*result.metrics, threads]
    return Done(metrics=metrics, outcomes=outcomes, resumed_from_step=result.resumed_from_step,
                rung=None if rung is None else (rung.step, rung.score, rung.test_score),
                paused=result.paused)  # fmt: skip


def _trackers(
    targets: list[Any] | None, configs: list[Any], out_dirs: list[str], events: Any
) -> list[Any]:
    """Each job's `JobTracker` (its runs on the backends `work --log` or its sweep chose), or
    None for a job that is not tracked. `targets`: the worker's `TrackingTarget` per job."""
    if not targets or not any(targets):
        return [None] * len(configs)
    from lorabench.tracking.job import JobTracker

    def warn(text: str) -> None:
        events.put(Notice(text))

    trackers = []
    for target, cfg, out_dir in zip(targets, configs, out_dirs, strict=True):
        if target is None:
            trackers.append(None)
            continue
        try:
            trackers.append(JobTracker.for_job(target, cfg.model_dump(mode="json"),
                                               cfg.config_hash, Path(out_dir), warn))  # fmt: skip
        except Exception as error:  # noqa: BLE001  (tracking never fails a job)
            warn(f"job {target.job_id}: tracking is off ({type(error).__name__}: {error})")
            trackers.append(None)
    return trackers


def _end_tracking(tracker: Any, outcome: Any) -> None:
    """Close a job's runs: with its summary when it finished (`outcome` its result), else as
    interrupted (it resumes them later) or failed (`outcome` the error)."""
    if tracker is None:
        return
    if getattr(outcome, "paused", False):  # a halving rung: the runs go on if it is promoted
        tracker.close("interrupted")
    elif not isinstance(outcome, BaseException):
        tracker.finish(outcome.summary)
        tracker.close("finished")
    else:
        tracker.close("interrupted" if isinstance(outcome, Interrupted) else "failed")


def _report(
    events: Any,
    work: Callable[[], Final],
    ensure_worker_alive: Callable[[], None],
) -> None:
    """Run `work` and send its final message, or the interruption or failure that ended it."""
    final: Final
    try:
        final = work()
    except Interrupted as interrupted:
        final = Stopped(step=interrupted.step)
    except BaseException as error:  # noqa: BLE001  (every failure must reach the supervisor)
        final = _failure(error)
    ensure_worker_alive()
    try:
        events.put(final)
    finally:
        events.close()
        events.join_thread()


def run_child(
    config: dict[str, Any],
    out_dir: str,
    device: str,
    options: dict[str, Any],
    worker_pipe: Any,
    events: Any,
) -> None:
    """Entry point of the training process: sends `Progress`, then exactly one final message.
    `options` are `train_job`'s keyword arguments for how to run (checkpoint_every, grad_ckpt,
    compile) and `threads` (see `_use_threads`). `worker_pipe`: see the module's docstring."""
    should_stop, ensure_worker_alive = _setup_child(worker_pipe)
    options = _use_threads(options)
    targets = options.pop("tracking", None)  # the job's TrackingTarget in a list (work --log)
    rung = options.pop("rung", None)  # {"search": ..., "rung": k} for a halving job
    from lorabench.config import JobConfig
    from lorabench.search import SearchSpec
    from lorabench.train import train_job
    from lorabench.train.loop import RungPlan

    if rung is not None:
        options["rung"] = RungPlan(SearchSpec(**rung["search"]), rung["rung"])

    def work() -> Final:
        cfg = JobConfig(**config)
        (tracker,) = _trackers(targets, [cfg], [out_dir], events)
        try:
            result = train_job(
                cfg,
                Path(out_dir),
                device=device,
                on_progress=lambda event: events.put(Progress(event)),
                should_stop=should_stop,
                observer=tracker,
                **options,
            )
        except BaseException as error:
            _end_tracking(tracker, error)
            raise
        _end_tracking(tracker, result)
        return _done(result)

    _report(events, work, ensure_worker_alive)


def run_pack_child(
    configs: list[dict[str, Any]],
    out_dirs: list[str],
    device: str,
    options: dict[str, Any],
    worker_pipe: Any,
    events: Any,
) -> None:
    """Entry point for a pack (`work --pack`): `Progress` tagged with the job's slot, then one
    final message: `PackResults` (one `Done` or `Failed` per job), or one for the whole pack.
    `options` as for `run_child`; the worker refuses grad_ckpt with --pack."""
    should_stop, ensure_worker_alive = _setup_child(worker_pipe)
    options = _use_threads(options)
    from lorabench.config import JobConfig
    from lorabench.train.packed import train_packed

    def work() -> Final:
        cfgs = [JobConfig(**config) for config in configs]
        trackers = _trackers(options.get("tracking"), cfgs, out_dirs, events)
        try:
            results = train_packed(
                cfgs,
                [Path(out_dir) for out_dir in out_dirs],
                device=device,
                on_progress=lambda slot, event: events.put(Progress(event, slot=slot)),
                should_stop=should_stop,
                checkpoint_every=options["checkpoint_every"],
                compile=options["compile"],
                observers=trackers,
            )
        except BaseException as error:
            for tracker in trackers:
                _end_tracking(tracker, error)
            raise
        for tracker, result in zip(trackers, results, strict=True):
            _end_tracking(tracker, result)
        return PackResults([_failure(r) if isinstance(r, BaseException) else _done(r)
                            for r in results])  # fmt: skip

    _report(events, work, ensure_worker_alive)
