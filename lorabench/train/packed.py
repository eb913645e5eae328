"""Packed training: K jobs that differ only in learning rate share one frozen base and one
forward pass per step.

The jobs' trainable tensors (adapters, new heads) are stacked along a leading axis and
`torch.func.vmap` runs the task's own loss over that axis with the batch shared. Layers before
the first adapter run once; after it, each frozen matmul sees K times the rows (one large matmul
instead of K small ones) and the adapters' become batched matmuls. Autograd then gives each
job exactly the gradient of its own loss. Each job keeps its own leaves, AdamW, scheduler,
history, checkpoint and failure: a NaN in one job fails that job and the others go on.

Evaluation is packed as well, by routing the adapter layers over a K-times-wider batch
(`fanout`), since generation cannot run under vmap.

Exactness: a packed job takes the same steps as its solo run (same initialisation, data order
and batches; fp32 losses equal to rounding). Random draws inside the forward pass (dropout) are
the exception: vmap draws each job's masks independently, so with dropout a packed job sees
other masks than its solo run, at the same rate.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from lorabench.config import JobConfig
from lorabench.packing import pack_key
from lorabench.tasks import Evaluation
from lorabench.train.checkpoint import check_write
from lorabench.train.errors import Interrupted
from lorabench.train.fanout import NotFannable, evaluate_fanned
from lorabench.train.loop import (
    PREPARED_NAME,
    JobSetup,
    TrainResult,
    evaluate,
    final_result,
    peak_memory_mb,
    reset_peak_memory,
    setup_job,
)
from lorabench.train.state import JobRun, Observer
from lorabench.train.step import Epoch, Forward, accumulate, advance
from lorabench.variants import adapter_extra_state, get_variant

PackProgress = Callable[[int, dict[str, Any]], None]


class PackError(ValueError):
    """These jobs cannot share one pass; the message says why (run them one at a time)."""


def check_packable(cfgs: Sequence[JobConfig]) -> None:
    if not cfgs:
        raise PackError("nothing to pack")
    if len({pack_key(json.loads(c.canonical_json())) for c in cfgs}) != 1:
        raise PackError("packed jobs must differ only in learning rate")
    if len({c.config_hash for c in cfgs}) != len(cfgs):
        raise PackError("the same job twice in one pack")
    refusal = pack_refusal(cfgs[0].variant)
    if refusal is not None:
        raise PackError(refusal)


def pack_refusal(variant: str) -> str | None:
    """Why jobs of this variant cannot be packed, or None if they can."""
    spec = get_variant(variant)
    if spec.on_step is not None:
        return f"variant {spec.name!r} changes its weights between steps (on_step)"
    if spec.extra_loss is not None:
        return f"variant {spec.name!r} adds its own loss term, which is not vmapped"
    return None


class _Bound(nn.Module):
    """The model with one job's trainable tensors swapped in, as `task.loss` expects it."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model, self.params = model, params

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.model, self.params, args, kwargs, strict=False)


def train_packed(
    cfgs: Sequence[JobConfig],
    out_dirs: Sequence[Path],
    *,
    device: str = "cpu",
    on_progress: PackProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 50,
    compile: bool = False,  # noqa: A002 (the worker flag's name)
    observers: Sequence[Observer | None] | None = None,
) -> list[TrainResult | BaseException]:
    """Train the jobs together; each gets its solo run's result, or the error that ended it.
    `compile` runs the packed step through `torch.compile` (as `train_job`'s); `observers`, one
    per job, as `train_job`'s `observer`."""
    check_packable(cfgs)
    report = on_progress or (lambda _k, _event: None)
    stop = should_stop or (lambda: False)
    setup = setup_job(cfgs[0], Path(out_dirs[0]), torch.device(device))  # one model, one init
    if setup.prepare_seconds is not None:
        _share_prepared(out_dirs)
    runs = _open_runs(setup, cfgs, out_dirs, report, observers)
    packed_loss = _packed_loss(setup, compile=compile)
    reset_peak_memory(setup.device)
    started, fanned_evals = time.perf_counter(), 0
    for index in range(setup.plan.epochs):
        epoch = Epoch.of(setup, index)
        in_epoch = [r for r in runs if r.error is None and len(r.history.evals) == index]
        setup.model.train()
        # A job resumed from a later checkpoint joins when the pack reaches its step.
        while waiting := [r for r in in_epoch if r.error is None and r.step < epoch.last_step]:
            step = min(r.step for r in waiting)
            live = [r for r in waiting if r.step == step]
            tick = time.perf_counter()
            forward = _forward(setup, packed_loss, live)
            losses, _ = accumulate(setup, forward, live, epoch=epoch, step=step)
            seconds = time.perf_counter() - tick
            for run, loss in zip(live, losses, strict=True):
                advance(run, loss, epoch=epoch, seconds=seconds)
            if stop():
                for run in runs:
                    if run.error is None:
                        run.save()
                raise Interrupted(max(r.step for r in runs))
            for run in live:
                if run.error is None and epoch.checkpoints_at(run.step, checkpoint_every):
                    run.save()
        fanned_evals += _score_epoch(setup, [r for r in in_epoch if r.error is None], index)
    seconds, peak = time.perf_counter() - started, peak_memory_mb(setup.device)
    extras = {"pack_size": float(len(runs)), "packed_evals": float(fanned_evals),
              **({"compiled": 1.0} if compile else {})}  # fmt: skip
    return [_finish(setup, run, seconds=seconds, peak_mb=peak, extras=extras) for run in runs]


def _open_runs(setup: JobSetup, cfgs: Sequence[JobConfig], out_dirs: Sequence[Path],
               report: PackProgress,
               observers: Sequence[Observer | None] | None = None) -> list[JobRun]:  # fmt: skip
    """The pack's jobs, each resumed from its own checkpoint if it has one."""
    model = setup.model
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    extra_state = adapter_extra_state(model)
    return [
        JobRun.in_pack(
            setup,
            cfg,
            Path(out_dir),
            initial=initial,
            extra_state=extra_state,
            report=functools.partial(report, k),
            observer=None if observers is None else observers[k],
        )
        for k, (cfg, out_dir) in enumerate(zip(cfgs, out_dirs, strict=True))
    ]


def _packed_loss(setup: JobSetup, *, compile: bool) -> Callable[..., torch.Tensor]:  # noqa: A002
    """The task loss of every job at once: vmapped over the jobs' stacked tensors."""

    def job_loss(params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return setup.task.loss(_Bound(setup.model, params), batch)

    packed_loss = vmap(job_loss, in_dims=(0, None), randomness="different")
    if compile:
        # Fuses what vmap leaves as separate passes over K-times-larger activations.
        packed_loss = torch.compile(packed_loss)
    return packed_loss


def _forward(setup: JobSetup, packed_loss: Callable[..., torch.Tensor],
             live: Sequence[JobRun]) -> Forward:  # fmt: skip
    """One micro-batch's forward pass for the live jobs: their losses, one per job."""

    def forward(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        stacked = {n: torch.stack([r.params[n] for r in live]) for n in live[0].params}
        with setup.autocast:
            return packed_loss(stacked, batch), None

    return forward


def _score_epoch(setup: JobSetup, scoring: list[JobRun], index: int) -> int:
    """Evaluate the jobs that trained through epoch `index`, record and checkpoint them;
    returns how many of the reported split's evaluations ran fanned out (0 or 1)."""
    for run in scoring:
        run.report_eval(index)
    fanned_evals = 0
    for split, data in setup.evaluated.items():
        evaluations, fanned = _evaluate_pack(setup, scoring, data, split)
        if split == "test":  # `packed_evals` counts the reported split's evaluations
            fanned_evals += fanned
        for run, evaluation in zip(scoring, evaluations, strict=True):
            run.record(split, index + 1, evaluation)
    for run in scoring:
        run.save()
    return fanned_evals


def _finish(setup: JobSetup, run: JobRun, *, seconds: float, peak_mb: float,
            extras: dict[str, float]) -> TrainResult | BaseException:  # fmt: skip
    if run.error is not None:
        return run.error
    _load_into(setup.model, run.params)  # the variant's report reads this job's tensors
    return final_result(setup, run, seconds=seconds, peak_mb=peak_mb, extras=extras)


def _share_prepared(out_dirs: Sequence[Path]) -> None:
    """Every job keeps the data-driven init, so any of them can later resume alone."""
    source = Path(out_dirs[0]) / PREPARED_NAME
    for out_dir in out_dirs[1:]:
        target = Path(out_dir) / PREPARED_NAME
        if source.exists() and not target.exists():
            check_write()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def _evaluate_pack(setup: JobSetup, runs: Sequence[JobRun], data: Sequence[dict],
                   split: str) -> tuple[list[Evaluation], int]:  # fmt: skip
    """Every run's evaluation of `split`: in one wide pass when the evaluation allows (see
    fanout), else one job at a time. The second value is 1 if the wide pass was used."""
    if len(runs) > 1:

        def run_on(stand_in: Any) -> Evaluation:
            return evaluate(setup, stand_in, data, split)

        try:
            return evaluate_fanned(setup.model, [r.params for r in runs], run_on), 1
        except NotFannable:
            pass
        except torch.OutOfMemoryError:
            # K copies of an evaluation batch did not fit; one job's batch did in training.
            if setup.device.type == "cuda":
                torch.cuda.empty_cache()
    evaluations = []
    for run in runs:
        _load_into(setup.model, run.params)
        evaluations.append(evaluate(setup, setup.model, data, split))
    return evaluations, 0


@torch.no_grad()
def _load_into(model: nn.Module, params: dict[str, torch.Tensor]) -> None:
    own = dict(model.named_parameters())
    for name, tensor in params.items():
        own[name].copy_(tensor)
