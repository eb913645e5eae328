"""One optimizer step, the same for a job trained alone and for the jobs of a pack: the step's
micro-batches, their gradients accumulated (`accumulate`), then each job's optimizer step, or
its failure when its loss is not finite (`advance`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lorabench.train.errors import NonFiniteLoss
from lorabench.train.state import JobRun
from lorabench.variants import StepContext

if TYPE_CHECKING:
    from lorabench.train.loop import JobSetup

Batch = dict[str, torch.Tensor]
# A micro-batch's forward pass: the task loss (0-d alone, one per job in a pack) and the
# variant's extra loss (None when it adds none).
Forward = Callable[[Batch], tuple[torch.Tensor, torch.Tensor | None]]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    # A fresh generator per (seed, epoch): a resumed run replays the same data order.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def to_device(batch: Batch, dev: torch.device) -> Batch:
    return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}


@dataclass(frozen=True)
class Epoch:
    """One pass over the training data: its number (from 0), its data order and the optimizer
    steps it spans (steps `first_step` up to `last_step`, counted from 0)."""

    index: int
    order: list[int]
    first_step: int
    last_step: int

    @classmethod
    def of(cls, setup: JobSetup, index: int) -> Epoch:
        plan = setup.plan
        first = index * plan.steps_per_epoch
        last = min(first + plan.steps_per_epoch, plan.total_steps)
        return cls(index, epoch_order(len(setup.train_data), setup.cfg.seed, index), first, last)

    def checkpoints_at(self, step: int, every: int) -> bool:
        """Whether a job checkpoints on reaching `step` mid-epoch (every epoch's end does)."""
        return step % every == 0 and step < self.last_step


def accumulate(
    setup: JobSetup, forward: Forward, runs: Sequence[JobRun], *, epoch: Epoch, step: int
) -> tuple[list[float], float | None]:
    """Forward/backward over the micro-batches of optimizer step `step` (0-based) for `runs`,
    then each run's gradient clipping. Returns each run's mean task loss and the mean extra
    (variant) loss, None when the variant adds none."""
    cfg, task, data = setup.cfg, setup.task, setup.train_data
    start = (step - epoch.first_step) * cfg.grad_accum * cfg.batch_size
    stop = min(start + cfg.grad_accum * cfg.batch_size, len(epoch.order))
    n_examples = stop - start
    totals, extra_total = [0.0] * len(runs), None
    # A task may lay out training micro-batches its own way (padding-free NLG rows).
    collate = getattr(task, "collate_train", task.collate)
    for offset in range(start, stop, cfg.batch_size):
        indices = epoch.order[offset : min(offset + cfg.batch_size, stop)]
        losses, extra = forward(to_device(collate([data[i] for i in indices]), setup.device))
        # Weight by size so accumulated micro-batches equal one large batch exactly.
        weight = len(indices) / n_examples
        ((losses if extra is None else losses + extra) * weight).sum().backward()
        values = losses.detach().reshape(-1).tolist()
        totals = [t + v * weight for t, v in zip(totals, values, strict=True)]
        if extra is not None:
            extra_total = (extra_total or 0.0) + extra.item() * weight
    if cfg.max_grad_norm is not None:
        for run in runs:
            torch.nn.utils.clip_grad_norm_(list(run.params.values()), cfg.max_grad_norm)
    return totals, extra_total


def advance(
    run: JobRun,
    loss: float,
    extra: float | None = None,
    *,
    epoch: Epoch,
    started: float | None = None,
    seconds: float | None = None,
) -> None:
    """Take `run`'s optimizer step on the gradients `accumulate` left, record it and report it;
    or, when the loss is not finite, set `run.error` and leave the run as it was. The step's
    time is `seconds` where the caller measured it (a pack times its shared pass), else the
    time from `started` until this run's optimizer has stepped."""
    number = epoch.index + 1
    if not math.isfinite(loss):
        run.error = NonFiniteLoss(
            f"training loss became {loss} at step {run.step + 1} (epoch {number}) with "
            f"lr={run.cfg.lr:g}; the run diverged, so retrying would fail the same way"
        )
        return
    setup, plan = run.setup, run.setup.plan
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.step += 1
    if setup.spec.on_step is not None:
        setup.spec.on_step(
            StepContext(setup.model, run.optimizer, run.step, plan.total_steps, setup.hyper)
        )
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step_seconds.append(seconds if seconds is not None else time.perf_counter() - started)
    run.history.losses.append((run.step, number, loss, lr))
    measured = {"train/loss": loss, "train/lr": lr, "train/epoch": number}
    if extra is not None:
        run.history.extras.append((run.step, number, extra))
        measured["train/extra_loss"] = extra
    run.observer.log(run.step, measured)
    run.report({"phase": "train", "epoch": number, "epochs": plan.epochs, "step": run.step,
                "total_steps": plan.total_steps, "loss": loss, "lr": lr})  # fmt: skip
