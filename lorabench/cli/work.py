"""`lorabench work`: run a worker until stopped (or until the queue is empty)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lorabench.cli.common import (
    DbOption,
    LogDirOption,
    LogOption,
    console,
    err_console,
    quiet_libraries,
    require_finite,
    require_int,
    tracking_backends,
    user_errors,
)


def work_command(
    ctx: typer.Context,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="GPU index, or 'cpu'. Default: GPU 0 when CUDA is available. Several "
            "(0,1,2,3) or 'all': one supervised worker per GPU, the CPUs divided between them."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads per worker (torch.set_num_threads, OMP_NUM_THREADS). Default: "
            "torch's own for one worker; the available CPUs / workers for several GPUs.",
        ),
    ] = None,
    sweep: Annotated[str | None, typer.Option(help="Only run jobs of this sweep.")] = None,
    max_jobs: Annotated[int | None, typer.Option(min=1, help="Stop after N jobs.")] = None,
    exit_when_empty: Annotated[
        bool,
        typer.Option(
            help="Exit once nothing in scope is queued or running (a running job may still "
            "come back to the queue), instead of waiting for new jobs."
        ),
    ] = False,
    runs_dir: Annotated[Path, typer.Option(help="Where job folders (checkpoints) go.")] = Path(
        "runs"
    ),
    lease_seconds: Annotated[
        float, typer.Option(min=1, help="Lease length; a dead worker's job is reclaimed after it.")
    ] = 120.0,
    heartbeat_seconds: Annotated[
        float, typer.Option(min=0.1, help="Lease renewal interval (lease >= 4x this).")
    ] = 20.0,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Checkpoint every N optimizer steps (and every epoch).")
    ] = 50,
    poll_seconds: Annotated[float, typer.Option(min=0.1, help="Wait between empty polls.")] = 5.0,
    pack: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Train up to K jobs of a sweep together when they differ only in learning "
            "rate: one model, one forward pass, K optimizers (see README). Default: the "
            "sweep's own `pack` (plan --pack), else 1.",
        ),
    ] = None,
    grad_ckpt: Annotated[
        bool,
        typer.Option(
            "--grad-ckpt",
            help="Recompute the base model's activations in backward: less memory, same "
            "results (Hugging Face models).",
        ),
    ] = False,
    compile_step: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the training step (packed or not): faster steps after a "
            "compile of tens of seconds per job, so for long jobs (see README).",
        ),
    ] = False,
    log: LogOption = None,
    log_dir: LogDirOption = None,
    db: DbOption = None,
) -> None:
    """Claim jobs one at a time, train and evaluate each, write the metrics back. Exits 1 when
    a job it ran ended failed (0 when every one succeeded or was requeued), 130 when stopped."""
    quiet_libraries()
    if gpu is not None and ("," in gpu or gpu.strip().lower() == "all"):
        raise typer.Exit(_run_fleet(ctx, gpu, threads))
    with user_errors():
        for option, value in (("--lease-seconds", lease_seconds),
                              ("--heartbeat-seconds", heartbeat_seconds),
                              ("--poll-seconds", poll_seconds)):  # fmt: skip
            require_finite(option, value)
        require_int("--pack", pack)
        if runs_dir.exists() and not runs_dir.is_dir():
            raise ValueError(f"--runs-dir {runs_dir} is a file; job folders need a folder")
        tracking = tracking_backends(log, log_dir)
        handled = run_worker(
            db=db,
            gpu=gpu,
            sweep=sweep,
            max_jobs=max_jobs,
            exit_when_empty=exit_when_empty,
            runs_dir=runs_dir,
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
            checkpoint_every=checkpoint_every,
            poll_seconds=poll_seconds,
            log=tracking,
            log_dir=log_dir,
            pack=pack,
            grad_ckpt=grad_ckpt,
            compile=compile_step,
            threads=threads,
        )
    console.print(f"worker finished: {handled} job(s) handled")


def _run_fleet(ctx: typer.Context, gpu: str, threads: int | None) -> int:
    """`--gpu 0,1,...`: one `lorabench work --gpu i` per device with the other options this
    command was given (lorabench.worker.fleet); returns the worst worker's exit code."""
    from lorabench.worker.fleet import run_fleet, split_gpus, thread_share

    with user_errors():
        devices = split_gpus(gpu)
    share = thread_share(len(devices), threads)
    options = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name in ("gpu", "threads") or source is None or source.name == "DEFAULT":
            continue
        options += _as_args(param, ctx.params[param.name])
    console.print(f"{len(devices)} workers ({', '.join(devices)}), {share} CPU thread(s) each")
    return run_fleet(devices, share, options)


def _as_args(param: Any, value: object) -> list[str]:
    """An option's value as the command-line arguments that give it (a click Option)."""
    if param.is_flag:
        if value:
            return [param.opts[0]]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    values = value if param.multiple else [value]
    return [arg for v in values for arg in (param.opts[0], str(getattr(v, "value", v)))]


def run_worker(*, db: str | None, gpu: str | None, **options: object) -> int:
    """`lorabench.run_worker` (the Python API runs the worker), its outcome as exit codes."""
    from lorabench.api import run_worker as run

    try:
        result = run(db=db, gpu=gpu, **options)
    except KeyboardInterrupt:  # asked to stop: the running job was checkpointed and requeued
        raise typer.Exit(130) from None
    if result.failed:  # 1, not 2: the command was right, its jobs were not
        err_console.print(f"[red]{result.failed} job(s) ended failed[/]; see lorabench status")
        raise typer.Exit(1)
    return result.handled
