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

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from lorabench.config import JobConfig
from lorabench.packing import pack_key
from lorabench.tasks import Evaluation
from lorabench.train.checkpoint import check_write, load_checkpoint, save_checkpoint
from lorabench.train.errors import Interrupted, NonFiniteLoss
from lorabench.train.fanout import NotFannable, evaluate_fanned
from lorabench.train.loop import (
    PREPARED_NAME,
    Schedule,
    TrainResult,
    _check_groups,
    _epoch_order,
    _evaluate,
    _History,
    _peak_memory_mb,
    _scheduler,
    _to,
    autocast_for,
    checkpoint_state,
    final_result,
    setup_job,
)
from lorabench.variants import adapter_extra_state, get_variant, load_adapter_extra_state

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


@dataclass
class _Slot:
    """One job of the pack and everything it owns."""

    index: int
    cfg: JobConfig
    out_dir: Path
    params: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: _History = field(default_factory=_History)
    step: int = 0
    resumed_from: int | None = None
    error: BaseException | None = None
    step_seconds: list[float] = field(default_factory=list)


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
) -> list[TrainResult | BaseException]:
    """Train the jobs together; each gets its solo run's result, or the error that ended it.
    `compile` runs the packed step through `torch.compile` (as `train_job`'s)."""
    check_packable(cfgs)
    report = on_progress or (lambda _k, _event: None)
    stop = should_stop or (lambda: False)
    dev, first = torch.device(device), cfgs[0]
    setup = setup_job(first, Path(out_dirs[0]), dev)  # one model, one data-driven init
    task, model, spec, hyper, plan = setup.task, setup.model, setup.spec, setup.hyper, setup.plan
    train_data = setup.train_data
    if setup.prepare_seconds is not None:
        _share_prepared(out_dirs)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    extra_state = adapter_extra_state(model)
    slots = [
        _slot(k, cfg, Path(out_dir), model, initial, spec, hyper, plan)
        for k, (cfg, out_dir) in enumerate(zip(cfgs, out_dirs, strict=True))
    ]

    def checkpoint(slot: _Slot) -> None:
        state = checkpoint_state(slot.cfg, slot.step, slot.params, extra_state, slot.optimizer,
                                 slot.scheduler, slot.history)  # fmt: skip
        save_checkpoint(slot.out_dir, state)

    def job_loss(params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return task.loss(_Bound(model, params), batch)

    packed_loss = vmap(job_loss, in_dims=(0, None), randomness="different")
    if compile:
        # Fuses what vmap leaves as separate passes over K-times-larger activations.
        packed_loss = torch.compile(packed_loss)
    autocast = autocast_for(first, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    started, fanned_evals = time.perf_counter(), 0
    for epoch in range(plan.epochs):
        order = _epoch_order(len(train_data), first.seed, epoch)
        first_step = epoch * plan.steps_per_epoch
        last_step = min(first_step + plan.steps_per_epoch, plan.total_steps)
        in_epoch = [s for s in slots if s.error is None and len(s.history.evals) == epoch]
        model.train()
        while True:
            # A job resumed from a later checkpoint joins when the pack reaches its step.
            waiting = [s for s in in_epoch if s.error is None and s.step < last_step]
            if not waiting:
                break
            step = min(s.step for s in waiting)
            live = [s for s in waiting if s.step == step]
            tick = time.perf_counter()
            losses = _packed_step(first, task, packed_loss, live, train_data, order,
                                  step - first_step, dev, autocast)  # fmt: skip
            seconds = time.perf_counter() - tick
            for slot, loss in zip(live, losses, strict=True):
                _advance(slot, loss, epoch, plan, seconds, report)
            if stop():
                for slot in slots:
                    if slot.error is None:
                        checkpoint(slot)
                raise Interrupted(max(s.step for s in slots))
            for slot in live:
                if (
                    slot.error is None
                    and slot.step % checkpoint_every == 0
                    and (slot.step < last_step)
                ):
                    checkpoint(slot)
        scoring = [s for s in in_epoch if s.error is None]
        for slot in scoring:
            report(slot.index, {"phase": "eval", "epoch": epoch + 1, "epochs": plan.epochs,
                                "step": slot.step, "total_steps": plan.total_steps})  # fmt: skip
        for split, data in setup.evaluated.items():
            evaluations, fanned = _evaluate_pack(first, task, model, data, dev, autocast,
                                                 scoring, split)  # fmt: skip
            if split == "test":  # `packed_evals` counts the reported split's evaluations
                fanned_evals += fanned
            for slot, evaluation in zip(scoring, evaluations, strict=True):
                slot.history.record(split, epoch + 1, slot.step, evaluation)
        for slot in scoring:
            checkpoint(slot)
    seconds, peak = time.perf_counter() - started, _peak_memory_mb(dev)
    results: list[TrainResult | BaseException] = []
    for slot in slots:
        if slot.error is not None:
            results.append(slot.error)
            continue
        _load_into(model, slot.params)  # the variant's report reads this job's tensors
        results.append(
            final_result(
                setup,
                slot.cfg,
                slot.history,
                slot.step_seconds,
                seconds,
                peak,
                slot.resumed_from,
                {
                    "pack_size": float(len(slots)),
                    "packed_evals": float(fanned_evals),
                    **({"compiled": 1.0} if compile else {}),
                },
            )
        )
    return results


def _share_prepared(out_dirs: Sequence[Path]) -> None:
    """Every job keeps the data-driven init, so any of them can later resume alone."""
    source = Path(out_dirs[0]) / PREPARED_NAME
    for out_dir in out_dirs[1:]:
        target = Path(out_dir) / PREPARED_NAME
        if source.exists() and not target.exists():
            check_write()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def _slot(k, cfg, out_dir, model, initial, spec, hyper, plan) -> _Slot:  # noqa: ANN001
    params = {n: t.clone().requires_grad_() for n, t in initial.items()}
    if spec.param_groups is not None:
        # The variant groups the model's parameters; map each to this job's own tensor.
        name_of = {id(p): n for n, p in model.named_parameters()}
        groups = [{**g, "params": [params[name_of[id(p)]] for p in g["params"]]}
                  for g in spec.param_groups(model, cfg.lr, hyper)]  # fmt: skip
    else:
        groups = [{"params": list(params.values())}]
    _check_groups(groups, list(params.values()), cfg.variant)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    slot = _Slot(k, cfg, out_dir, params, optimizer, _scheduler(cfg, optimizer, plan, spec, hyper))
    saved = load_checkpoint(out_dir)
    if saved is not None and saved.get("config_hash") == cfg.config_hash:
        with torch.no_grad():
            for name, tensor in params.items():
                tensor.copy_(saved["adapter"][name])
        load_adapter_extra_state(model, saved["adapter_extra"])
        slot.optimizer.load_state_dict(saved["optimizer"])
        slot.scheduler.load_state_dict(saved["scheduler"])
        slot.history, slot.step = _History.from_state(saved["history"]), int(saved["step"])
        slot.resumed_from = slot.step
    return slot


def _packed_step(
    cfg, task, packed_loss, live, data, order, step_in_epoch, dev, autocast
) -> list[float]:  # noqa: ANN001
    """Forward/backward of one optimizer step for every live job; returns their mean losses."""
    start = step_in_epoch * cfg.grad_accum * cfg.batch_size
    stop = min(start + cfg.grad_accum * cfg.batch_size, len(order))
    n_examples = stop - start
    totals = [0.0] * len(live)
    for offset in range(start, stop, cfg.batch_size):
        indices = order[offset : min(offset + cfg.batch_size, stop)]
        batch = _to(task.collate([data[i] for i in indices]), dev)
        stacked = {n: torch.stack([s.params[n] for s in live]) for n in live[0].params}
        with autocast:
            losses = packed_loss(stacked, batch)
        weight = len(indices) / n_examples  # micro-batches add up to one large batch exactly
        (losses * weight).sum().backward()
        totals = [t + v * weight for t, v in zip(totals, losses.detach().tolist(), strict=True)]
    if cfg.max_grad_norm is not None:
        for slot in live:
            torch.nn.utils.clip_grad_norm_(list(slot.params.values()), cfg.max_grad_norm)
    return totals


def _evaluate_pack(cfg, task, model, data, dev, autocast, slots,  # noqa: ANN001
                   split) -> tuple[list[Evaluation], int]:  # fmt: skip
    """Every slot's evaluation of `split`: in one wide pass when the evaluation allows (see
    fanout), else one job at a time. The second value is 1 if the wide pass was used."""
    if len(slots) > 1:

        def run(stand_in: Any) -> Evaluation:
            return _evaluate(cfg, task, stand_in, data, dev, autocast, split)

        try:
            return evaluate_fanned(model, [s.params for s in slots], run), 1
        except NotFannable:
            pass
        except torch.OutOfMemoryError:
            # K copies of an evaluation batch did not fit; one job's batch did in training.
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    evaluations = []
    for slot in slots:
        _load_into(model, slot.params)
        evaluations.append(_evaluate(cfg, task, model, data, dev, autocast, split))
    return evaluations, 0


def _advance(slot: _Slot, loss: float, epoch: int, plan: Schedule, seconds: float,  # noqa: PLR0913
             report: PackProgress) -> None:  # fmt: skip
    if not math.isfinite(loss):
        slot.error = NonFiniteLoss(
            f"training loss became {loss} at step {slot.step + 1} (epoch {epoch + 1}) with "
            f"lr={slot.cfg.lr:g}; the run diverged, so retrying would fail the same way"
        )
        return
    lr = slot.scheduler.get_last_lr()[0]
    slot.optimizer.step()
    slot.step += 1
    slot.scheduler.step()
    slot.optimizer.zero_grad(set_to_none=True)
    slot.step_seconds.append(seconds)
    slot.history.losses.append((slot.step, epoch + 1, loss, lr))
    report(slot.index, {"phase": "train", "epoch": epoch + 1, "epochs": plan.epochs,
                        "step": slot.step, "total_steps": plan.total_steps, "loss": loss,
                        "lr": lr})  # fmt: skip


@torch.no_grad()
def _load_into(model: nn.Module, params: dict[str, torch.Tensor]) -> None:
    own = dict(model.named_parameters())
    for name, tensor in params.items():
        own[name].copy_(tensor)
