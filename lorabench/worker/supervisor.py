"""The worker: claims jobs one at a time and trains each in a child process it supervises."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, assert_never

from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from lorabench.store import (
    ClaimedJob,
    LeaseLost,
    MetricRow,
    OutcomeRow,
    RungRow,
    claim_pack,
    fail,
    finish,
    held_jobs,
    pause,
    reclaim,
    register_worker,
    release,
    running_jobs,
    set_out_dir,
    stop_worker,
)
from lorabench.store.queue import sweep_of
from lorabench.tracking import TrackingTarget, install_hint, missing_backends
from lorabench.worker import lifeline
from lorabench.worker.child import run_child, run_pack_child
from lorabench.worker.heartbeat import Heartbeater
from lorabench.worker.messages import (
    Cancelled,
    Crashed,
    Done,
    Failed,
    Final,
    JobOutcome,
    Lost,
    Notice,
    PackResults,
    Progress,
    RunOutcome,
    Stopped,
)
from lorabench.worker.view import WorkerView, describe

T = TypeVar("T")
OUTAGE_FIRST_WAIT_S = 1.0
OUTAGE_MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class WorkerSettings:
    device: str = "cpu"
    sweep: str | None = None
    max_jobs: int | None = None
    exit_when_empty: bool = False
    runs_dir: Path = Path("runs")
    lease_seconds: float = 120.0
    heartbeat_seconds: float = 20.0
    poll_seconds: float = 5.0
    checkpoint_every: int = 50
    stop_grace_seconds: float = 60.0
    pack: int | None = None  # jobs trained together (differing only in lr); None: the sweep's
    grad_ckpt: bool = False  # recompute the base model's activations in backward (memory only)
    compile: bool = False  # torch.compile the training step (speed only)
    # Tracking backends every job logs to (`--log`); None: each job's sweep decides (its `log`).
    log: tuple[str, ...] | None = None
    log_dir: Path | None = None  # tracking files (TensorBoard, W&B, MLflow); None: runs_dir
    threads: int | None = None  # CPU threads of each trainer (torch, OpenMP); None: torch's own

    def __post_init__(self) -> None:
        if self.grad_ckpt and (self.pack or 1) > 1:
            raise ValueError(
                "--grad-ckpt cannot be combined with --pack yet: checkpointed layers recompute "
                "outside the vmap that packs the jobs"
            )
        if self.lease_seconds < 4 * self.heartbeat_seconds:
            raise ValueError(
                f"the lease ({self.lease_seconds:g} s) must be at least 4x the heartbeat "
                f"interval ({self.heartbeat_seconds:g} s), so one slow beat cannot lose it"
            )


# What the fork server imports once for all jobs; a module a job's child imports beyond these
# is imported again by every job (tests/test_worker_imports.py).
FORK_SERVER_PRELOAD = ("lorabench.worker.lifeline", "lorabench.worker.child", "lorabench.train")


def _context() -> multiprocessing.context.BaseContext:
    # A fork server imports torch and transformers once; each job then starts in well under a
    # second, and never inherits the supervisor's threads (which plain fork would). `lifeline`
    # comes first: the fork server arms itself to die with the worker before the slow imports.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(FORK_SERVER_PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


class Worker:
    def __init__(self, engine: Engine, settings: WorkerSettings, view: WorkerView) -> None:
        self.engine, self.settings, self.view = engine, settings, view
        self.stop_requested = threading.Event()
        self.stop_now = threading.Event()
        self.context = _context()
        self.worker_id: int | None = None
        self.completed = 0
        self.failed = 0  # jobs this worker ran that ended failed (not requeued): the exit code
        self._refused: set[str] = set()  # variants already said to be unpackable
        self._noticed: set[str] = set()  # warnings from training children, each said once

    def request_stop(self, *_signal: object) -> None:
        if self.stop_requested.is_set():
            # A second Ctrl-C: do not wait for the step to end; the last checkpoint stands.
            self.stop_now.set()
            self.view.say("[yellow]stopping now: resuming from the last periodic checkpoint")
            return
        self.stop_requested.set()
        self.view.say(
            "[yellow]stopping: the running job is checkpointed and requeued "
            "(Ctrl-C again to stop at once)"
        )

    def run(self) -> int:
        """Claim and run jobs until told to stop; returns the number of jobs handled."""
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        self.worker_id = register_worker(
            self.engine, self.settings.device, process_start=lifeline.process_identity()
        )
        # The fork server (started from this, the main thread, with the first job) reads this to
        # know whom to die with; see lifeline.py.
        marker = lifeline.worker_marker()
        if self.settings.threads is not None:  # the fork server's OpenMP runtime starts with it
            marker["OMP_NUM_THREADS"] = str(self.settings.threads)
        previous_env = {name: os.environ.get(name) for name in marker}
        os.environ.update(marker)
        next_scan, waiting_for = 0.0, 0
        try:
            while not self.stop_requested.is_set():
                if self.settings.max_jobs is not None and self.completed >= self.settings.max_jobs:
                    break
                if time.monotonic() >= next_scan:
                    self.reclaim_from_dead_workers()
                    next_scan = time.monotonic() + self.settings.poll_seconds
                size = self.settings.pack
                if size is None and self.settings.grad_ckpt:
                    size = 1  # the worker's --grad-ckpt wins over a sweep's pack
                most = self.settings.max_jobs
                claimed = self.through_outages(
                    claim_pack,
                    self.worker_id,
                    size=size,
                    lease_seconds=self.settings.lease_seconds,
                    sweep=self.settings.sweep,
                    packable=self._packable,
                    most=None if most is None else most - self.completed,
                )
                if not claimed:
                    if self.settings.exit_when_empty:
                        # A running job may still come back: its worker fails it transiently,
                        # or dies (a dead worker on this host is caught by the scan above; one
                        # elsewhere when its lease runs out). Leave only when none runs.
                        running = self.through_outages(running_jobs, sweep=self.settings.sweep)
                        if not running:
                            break
                        if running != waiting_for:
                            self.view.say(
                                f"[dim]waiting: {running} running job(s) may still come back "
                                "to the queue (their workers may be alive)"
                            )
                        waiting_for = running
                    self.stop_requested.wait(self.settings.poll_seconds)
                    continue
                waiting_for = 0
                self.run_one(claimed)
                self.completed += len(claimed)
        finally:
            stop_worker(self.engine, self.worker_id)
            for name, value in previous_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.completed

    def reclaim_from_dead_workers(self) -> int:
        """End the leases of jobs whose worker ran on this machine and is proven dead (its
        process is gone, or its pid now belongs to another process), so they are claimable now
        instead of when the lease runs out. Returns how many."""
        held = self.through_outages(
            held_jobs, host=socket.gethostname(), exclude_worker=self.worker_id
        )
        reclaimed = 0
        for job in held:
            if lifeline.holder_state(job.host, job.pid, job.process_start) != "dead":
                continue
            reason = f"worker {job.host}:{job.pid} died (its process is gone)"
            if self.through_outages(reclaim, job, reason=reason):
                reclaimed += 1
                self.view.say(
                    f"[yellow]job {job.job_id}: its worker (pid {job.pid}) is dead; "
                    "reclaimed, it resumes from its checkpoint"
                )
        return reclaimed

    def through_outages(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a queue operation, waiting out a database outage (a server restart, a network
        blip) instead of dying: a result in hand is worth waiting for."""
        wait = OUTAGE_FIRST_WAIT_S
        while True:
            try:
                return operation(self.engine, *args, **kwargs)
            except OperationalError as error:
                if self.stop_now.is_set():
                    raise
                reason = str(error.orig or error).strip().splitlines()[0]
                self.view.say(f"[yellow]database unreachable ({reason}); retrying in {wait:g} s")
                self.stop_now.wait(wait)
                wait = min(wait * 2, OUTAGE_MAX_WAIT_S)

    def _packable(self, config: dict[str, Any]) -> bool:
        """Whether a claimed job may take pack mates (said once per variant when not)."""
        from lorabench.train.packed import pack_refusal

        refusal = pack_refusal(config["variant"])
        if refusal is not None and config["variant"] not in self._refused:
            self._refused.add(config["variant"])
            self.view.say(f"[yellow]not packing: {refusal}; these jobs run one at a time")
        return refusal is None

    def run_one(self, claims: list[ClaimedJob]) -> None:
        """Train one job, or a pack of jobs sharing one model (`--pack`), in a child process."""
        out_dirs: dict[int, str] = {}
        for claimed in claims:
            out_dir = claimed.out_dir or str(
                self.settings.runs_dir.resolve() / f"job-{claimed.job_id:06d}"
            )
            try:
                self.through_outages(set_out_dir, claimed.job_id, claimed.lease_token, out_dir)
                out_dirs[claimed.job_id] = out_dir
            except LeaseLost:  # paused between claim and start: another worker has it now
                label = describe(claimed.job_id, claimed.config)
                self.view.say(
                    f"[red]lease lost[/] {label}: another worker owns it now, not started"
                )
        claims = [c for c in claims if c.job_id in out_dirs]
        if not claims:
            return
        lead = claims[0]
        self.view.job_started(lead.job_id, lead.config, lead.attempt_number, pack=len(claims))
        tracking = self._tracking(claims)
        beats = [
            Heartbeater(
                self.engine,
                claimed,
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                interval=self.settings.heartbeat_seconds,
            )
            for claimed in claims
        ]
        for beat in beats:
            beat.start()
        events = self.context.Queue()
        # Only this process holds the write end: the child sees end-of-file when we die.
        worker_pipe, alive = self.context.Pipe(duplex=False)
        settings = self.settings
        options = {"checkpoint_every": settings.checkpoint_every, "grad_ckpt": settings.grad_ckpt,
                   "compile": settings.compile, "threads": settings.threads}  # fmt: skip
        options["tracking"] = tracking
        if lead.search is not None:  # halving jobs are claimed alone (store.claim_pack)
            options["rung"] = {"search": lead.search, "rung": lead.rung}
        common = (settings.device, options, worker_pipe, events)
        if len(claims) == 1:
            target, args = run_child, (lead.config, out_dirs[lead.job_id], *common)
        else:
            configs = [c.config for c in claims]
            target = run_pack_child
            args = (configs, [out_dirs[c.job_id] for c in claims], *common)
        child = self.context.Process(target=target, args=args, name=f"lorabench-job-{lead.job_id}")
        try:
            child.start()
        except BaseException:
            for beat in beats:
                beat.halt()
            alive.close()
            raise
        finally:
            worker_pipe.close()  # the child has its own copy
        try:
            ended = self._supervise(child, events, beats)
        finally:
            for beat in beats:
                beat.halt()
            if child.is_alive():
                child.kill()
            child.join()
            alive.close()
        for claimed, outcome in zip(claims, _per_job(ended, beats), strict=True):
            self._record(claimed, describe(claimed.job_id, claimed.config), outcome)

    def _supervise(self, child: Any, events: Any, beats: list[Heartbeater]) -> RunOutcome:
        """Relay progress until the child reports an outcome, dies, or must be stopped."""
        stopping_since: float | None = None
        reason = "interrupted"
        while True:
            try:
                message = events.get(timeout=0.2)
            except queue.Empty:
                message = None
            match message:
                case None:
                    pass
                case Progress(event=event, slot=slot):
                    beats[slot].progress = event
                    if slot == 0:
                        self.view.update(event)
                case Notice(text=text):
                    self._notice(text)
                case Stopped(step=step) if reason == "cancelled":
                    return Cancelled(step=step)
                case Done() | Failed() | Stopped() | PackResults():
                    return message
                case _:
                    raise TypeError(f"unknown message from the training process: {message!r}")
            if any(beat.lost.is_set() for beat in beats):
                child.kill()
                return Lost()
            cancelled = any(beat.cancel.is_set() for beat in beats)
            if stopping_since is None and (self.stop_requested.is_set() or cancelled):
                reason = "cancelled" if cancelled else "interrupted"
                child.terminate()  # SIGTERM: the child checkpoints at the end of its step
                stopping_since = time.monotonic()
            grace = self.settings.stop_grace_seconds
            overdue = stopping_since is not None and time.monotonic() - stopping_since > grace
            if overdue or self.stop_now.is_set():
                child.kill()
                return _stopped(reason)
            if not child.is_alive():
                final = _final_message(events)
                if final is not None:
                    return final
                if stopping_since is not None:
                    return _stopped(reason)
                return Crashed(exitcode=child.exitcode)

    def _tracking(self, claims: list[ClaimedJob]) -> list[TrackingTarget] | None:
        """Where each job of a run is logged: the worker's --log, else its sweep's; None when
        nowhere. A backend whose library is missing is left out, said once."""
        if self.settings.log == ():
            return None
        sweep = self.through_outages(sweep_of, claims[0].job_id)  # a pack shares one sweep
        wanted = sweep.tracking if self.settings.log is None else self.settings.log
        missing = missing_backends(wanted)
        for name in missing:
            self._notice(f"{name} logging is off: {install_hint(name)}")
        backends = tuple(n for n in wanted if n not in missing)
        if not backends:
            return None
        log_dir = (self.settings.log_dir or self.settings.runs_dir).resolve()
        return [TrackingTarget(backends=backends, log_dir=str(log_dir), sweep=sweep.name,
                               job_id=claimed.job_id) for claimed in claims]  # fmt: skip

    def _notice(self, text: str) -> None:
        if text not in self._noticed:
            self._noticed.add(text)
            self.view.say(f"[yellow]warning:[/] {escape(text)}")

    def _paused(  # noqa: PLR0913
        self,
        claimed: ClaimedJob,
        label: str,
        rows: list[MetricRow],
        outcomes: list[OutcomeRow],
        resumed: int | None,
        rung: RungRow | None,
    ) -> None:
        """A halving job reached the end of its rung: the queue decides what comes next."""
        if rung is None:
            raise TypeError(f"job {claimed.job_id} paused without a rung result")
        state = self.through_outages(pause, claimed, rows, rung, outcomes=outcomes,
                                     resumed_from_step=resumed)  # fmt: skip
        said = {"queued": "[green]promoted[/] to the next rung", "paused": "waits for its rung",
                "stopped": "[yellow]stopped[/] (lost the rung)"}.get(state, state)  # fmt: skip
        self.view.job_ended(
            f"rung {claimed.rung} {label}: select {rung.score:.4f} at step {rung.step}, {said}"
        )

    def _record(self, claimed: ClaimedJob, label: str, outcome: JobOutcome) -> None:
        try:
            match outcome:
                case Done(metrics=metrics, outcomes=encoded, resumed_from_step=resumed):
                    rows = [MetricRow(split=s, name=n, step=st, epoch=e, value=v)
                            for s, n, st, e, v in metrics]  # fmt: skip
                    outcomes = [OutcomeRow(split=s, epoch=e, data=data)
                                for s, e, data in encoded]  # fmt: skip
                    rung = None if outcome.rung is None else RungRow(*outcome.rung)
                    if outcome.paused:
                        self._paused(claimed, label, rows, outcomes, resumed, rung)
                        return
                    self.through_outages(finish, claimed, rows, outcomes=outcomes,
                                         resumed_from_step=resumed, rung=rung)  # fmt: skip
                    best = {r.name: r.value for r in rows if r.split == "summary"}
                    score = next((f"{k.removeprefix('best_')} {v:.4f}" for k, v in best.items()
                                  if k.startswith("best_") and k != "best_epoch"), "")  # fmt: skip
                    resumed_note = f", resumed from step {resumed}" if resumed else ""
                    self.view.job_ended(f"[green]done[/] {label}: {score}{resumed_note}")
                case Failed(transient=transient, message=message):
                    state = self.through_outages(fail, claimed, message, transient=transient)
                    self.failed += state == "failed"
                    self.view.job_ended(f"[red]{state}[/] {label}: {message}")
                case Crashed(exitcode=exitcode):
                    message = _exit_description(exitcode)
                    state = self.through_outages(fail, claimed, message, transient=True)
                    self.failed += state == "failed"
                    self.view.job_ended(f"[red]{state}[/] {label}: {message}")
                case Stopped() | Cancelled():
                    kind = "cancelled" if isinstance(outcome, Cancelled) else "interrupted"
                    self.through_outages(release, claimed, outcome=kind, reason=kind)
                    self.view.job_ended(f"[yellow]{kind}[/] {label} (checkpoint kept)")
                case Lost():
                    self.view.job_ended(f"[red]lease lost[/] {label}: another worker owns it now")
                case _:
                    assert_never(outcome)
        except LeaseLost:
            self.view.job_ended(f"[red]lease lost[/] {label}: result not written")


def _stopped(reason: str) -> Stopped | Cancelled:
    """The outcome of a job the supervisor stopped without hearing back from the child."""
    return Cancelled() if reason == "cancelled" else Stopped()


def _per_job(ended: RunOutcome, beats: list[Heartbeater]) -> list[JobOutcome]:
    """One outcome per job of a run: a pack reports each job's own; a lost lease or a cancel
    concerns its own job, and the pack's other jobs go back to the queue with their checkpoints."""
    match ended:
        case PackResults(results=results):
            return list(results)
        case Lost():
            return [Lost() if b.lost.is_set() else Stopped() for b in beats]
        case Cancelled():
            return [ended if b.cancel.is_set() else Stopped() for b in beats]
        case Done() | Failed() | Stopped() | Crashed():
            return [ended] * len(beats)
        case _:
            assert_never(ended)


def _final_message(events: Any) -> Final | None:
    """The final message a dead child may still have in flight, skipping progress."""
    while True:
        try:
            message = events.get(timeout=1.0)
        except queue.Empty:
            return None
        match message:
            case Progress() | Notice():
                continue
            case Done() | Failed() | Stopped() | PackResults():
                return message
            case _:
                raise TypeError(f"unknown message from the training process: {message!r}")


def _exit_description(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = (
            " (out of memory? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        )
        return f"training process killed by {name}{hint}"
    return f"training process exited with code {exitcode} without reporting a result"
