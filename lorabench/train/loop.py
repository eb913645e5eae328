"""The training loop: AdamW + warmup/decay, evaluation per epoch, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_scheduler

from lorabench.config import JobConfig
from lorabench.tasks import Evaluation, Task, TaskSettings, build_task, build_task_params
from lorabench.train.checkpoint import load_checkpoint, save_checkpoint
from lorabench.train.errors import DeterministicFailure, Interrupted, NonFiniteLoss
from lorabench.variants import (
    InjectReport,
    PrepareContext,
    StepContext,
    adapter_extra_state,
    adapter_parameters,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
    load_adapter_extra_state,
    load_adapter_state_dict,
)

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """Everything a finished job reports; `metrics` rows are (split, name, step, epoch, value),
    `outcomes` rows (split, epoch, arrays): each epoch's per-example results on the reported
    split ("eval"), as `Evaluation.outcomes` (see tasks/base.py)."""

    metrics: list[tuple[str, str, int, int | None, float]]
    summary: dict[str, float]
    resumed_from_step: int | None
    outcomes: list[tuple[str, int, dict[str, np.ndarray]]] = field(default_factory=list)


@dataclass
class _History:
    """What a job has measured so far; it lives in the checkpoint, so a resumed job reports
    its whole curve, and every epoch's outcomes, once."""

    losses: list[tuple[int, int, float, float]] = field(default_factory=list)  # step, epoch, ...
    evals: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # epoch, step, m
    extras: list[tuple[int, int, float]] = field(default_factory=list)  # step, epoch, extra loss
    selects: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # as evals
    # epoch, arrays as tensors (compact, and what a weights_only checkpoint load accepts)
    outcomes: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)

    def record(self, split: str, epoch: int, step: int, evaluation: Evaluation) -> None:
        if split == "select":
            self.selects.append((epoch, step, dict(evaluation.scores)))
            return
        if evaluation.outcomes is not None:
            arrays = {k: torch.from_numpy(np.asarray(v)) for k, v in evaluation.outcomes.items()}
            self.outcomes.append((epoch, arrays))
        self.evals.append((epoch, step, dict(evaluation.scores)))

    def to_state(self) -> dict[str, Any]:
        return {
            "losses": [list(row) for row in self.losses],
            "evals": [[epoch, step, dict(m)] for epoch, step, m in self.evals],
            "extras": [list(row) for row in self.extras],
            "selects": [[epoch, step, dict(m)] for epoch, step, m in self.selects],
            "outcomes": [[epoch, dict(arrays)] for epoch, arrays in self.outcomes],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _History:
        # A checkpoint written before select and outcomes existed has neither.
        return cls(
            losses=[(int(s), int(e), float(v), float(lr)) for s, e, v, lr in state["losses"]],
            evals=[(int(e), int(s), dict(m)) for e, s, m in state["evals"]],
            extras=[(int(s), int(e), float(v)) for s, e, v in state["extras"]],
            selects=[(int(e), int(s), dict(m)) for e, s, m in state.get("selects", [])],
            outcomes=[(int(e), dict(a)) for e, a in state.get("outcomes", [])],
        )


@dataclass(frozen=True)
class Schedule:
    """How many optimizer steps the job takes, derived from data size and config."""

    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def for_job(cls, cfg: JobConfig, n_train: int) -> Schedule:
        micro_batches = math.ceil(n_train / cfg.batch_size)
        steps_per_epoch = math.ceil(micro_batches / cfg.grad_accum)
        if cfg.max_steps is not None:  # like Hugging Face: max_steps overrides epochs
            total = cfg.max_steps
            epochs = math.ceil(total / steps_per_epoch)
        else:
            epochs = cfg.epochs
            total = epochs * steps_per_epoch
        return cls(steps_per_epoch, epochs, total, math.ceil(cfg.warmup_ratio * total))


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    # A fresh generator per (seed, epoch): a resumed run replays the same data order.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_model(cfg: JobConfig) -> tuple[Task, torch.nn.Module, InjectReport]:
    """The job's task and its model with adapters injected (seed the RNG first)."""
    task = build_task(
        cfg.task,
        TaskSettings(
            model=cfg.model,
            max_length=cfg.max_length,
            seed=cfg.seed,
            train_size=cfg.train_size,
            eval_size=cfg.eval_size,
            params=build_task_params(cfg.task, cfg.task_params),
            select_split=cfg.select_split,
        ),
    )
    model = task.load_model()
    injected = inject(
        model,
        cfg.variant,
        targets=cfg.targets,
        rank=cfg.rank,
        alpha=cfg.alpha,
        dropout=cfg.dropout,
        params=cfg.variant_params,
        trainable=task.head_modules,
        checkpoint_adapter=cfg.adapter_checkpointing,
    )
    return task, model, injected


def train_job(
    cfg: JobConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 50,
    grad_ckpt: bool = False,
    compile: bool = False,  # noqa: A002 (the worker flag's name)
) -> TrainResult:
    """Train and evaluate one job, resuming from `out_dir`'s checkpoint if there is one.

    `grad_ckpt` recomputes the base model's activations in backward (memory, not results).
    `compile` runs the training forward/backward through `torch.compile` (same math, other
    rounding; dropout draws from the compiler's generator); evaluation stays eager, since
    generation's changing shapes would recompile at every length."""
    report = on_progress or (lambda _event: None)
    stop = should_stop or (lambda: False)
    dev = torch.device(device)
    setup = setup_job(cfg, out_dir, dev)
    if grad_ckpt:
        enable_grad_ckpt(setup.model)
    task, model, spec, hyper, plan = setup.task, setup.model, setup.spec, setup.hyper, setup.plan
    # A variant's extra loss reads what the forward pass left on its modules, which a compiled
    # graph need not leave: such variants train eagerly.
    compiled = compile and spec.extra_loss is None
    step_model = torch.compile(model) if compiled else model
    train_data = setup.train_data
    trainable = [p for p in model.parameters() if p.requires_grad]
    if spec.param_groups is not None:
        groups = spec.param_groups(model, cfg.lr, hyper)
    else:
        groups = [{"params": trainable}]
    _check_groups(groups, trainable, cfg.variant)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(cfg, optimizer, plan, spec, hyper)
    history, step, resumed_from = _History(), 0, None
    checkpoint = load_checkpoint(out_dir)
    if checkpoint is not None and checkpoint.get("config_hash") == cfg.config_hash:
        load_adapter_state_dict(model, checkpoint["adapter"])
        load_adapter_extra_state(model, checkpoint["adapter_extra"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng_cpu"])
        history, step = _History.from_state(checkpoint["history"]), int(checkpoint["step"])
        resumed_from = step

    def checkpoint_now() -> None:
        save_checkpoint(out_dir, checkpoint_state(cfg, step, adapter_state_dict(model),
                                                  adapter_extra_state(model), optimizer,
                                                  scheduler, history))  # fmt: skip

    autocast = autocast_for(cfg, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    step_seconds: list[float] = []
    started = time.perf_counter()
    for epoch in range(len(history.evals), plan.epochs):
        order = _epoch_order(len(train_data), cfg.seed, epoch)
        first_step = epoch * plan.steps_per_epoch
        last_step = min(first_step + plan.steps_per_epoch, plan.total_steps)
        model.train()
        while step < last_step:
            tick = time.perf_counter()
            loss, extra = _optimizer_step(cfg, task, step_model, train_data, order,
                                          step - first_step, dev, autocast, trainable, spec,
                                          hyper)  # fmt: skip
            if not math.isfinite(loss):
                raise NonFiniteLoss(
                    f"training loss became {loss} at step {step + 1} (epoch {epoch + 1}) with "
                    f"lr={cfg.lr:g}; the run diverged, so retrying would fail the same way"
                )
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            step += 1
            if spec.on_step is not None:
                spec.on_step(StepContext(model, optimizer, step, plan.total_steps, hyper))
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds.append(time.perf_counter() - tick)
            history.losses.append((step, epoch + 1, loss, lr))
            if extra is not None:
                history.extras.append((step, epoch + 1, extra))
            report({"phase": "train", "epoch": epoch + 1, "epochs": plan.epochs, "step": step,
                    "total_steps": plan.total_steps, "loss": loss, "lr": lr})  # fmt: skip
            if stop():
                checkpoint_now()
                raise Interrupted(step)
            if step % checkpoint_every == 0 and step < last_step:
                checkpoint_now()
        report({"phase": "eval", "epoch": epoch + 1, "epochs": plan.epochs, "step": step,
                "total_steps": plan.total_steps})  # fmt: skip
        for split, data in setup.evaluated.items():
            evaluation = _evaluate(cfg, task, model, data, dev, autocast, split)
            history.record(split, epoch + 1, step, evaluation)
        checkpoint_now()
    return final_result(setup, cfg, history, step_seconds, time.perf_counter() - started,
                        _peak_memory_mb(dev), resumed_from,
                        {"compiled": 1.0} if compiled else None)  # fmt: skip


def checkpoint_state(cfg: JobConfig, step: int, adapter: dict[str, torch.Tensor],  # noqa: PLR0913
                     adapter_extra: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                     scheduler: Any, history: _History) -> dict[str, Any]:  # fmt: skip
    """What a checkpoint holds; a job resumes from it alone or in a pack alike."""
    return {
        "config_hash": cfg.config_hash,
        "step": step,
        "adapter": {k: v.detach().cpu() for k, v in adapter.items()},
        "adapter_extra": {k: v.cpu() for k, v in adapter_extra.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "history": history.to_state(),
    }


@dataclass
class JobSetup:
    """A job's model with adapters (after any data-driven init), data and step plan."""

    task: Task
    model: torch.nn.Module
    injected: InjectReport
    spec: Any
    hyper: Any
    train_data: Sequence[dict[str, Any]]
    # The splits scored every epoch, by name ("select" first, when the job holds one out).
    evaluated: dict[str, Sequence[dict[str, Any]]]
    plan: Schedule
    prepare_seconds: float | None


def setup_job(cfg: JobConfig, out_dir: Path, dev: torch.device) -> JobSetup:
    """Seed, build the model, load the data, run (or restore) the variant's prepare."""
    torch.manual_seed(cfg.seed)
    task, model, injected = build_model(cfg)
    model.to(dev)
    spec, hyper = get_variant(cfg.variant), build_params(cfg.variant, cfg.variant_params)
    train_data, select_data = task.load("train"), task.load("select")
    evaluated = {"select": select_data} if cfg.select_split and select_data else {}
    evaluated["test"] = task.load("test")
    plan = Schedule.for_job(cfg, len(train_data))
    prepare_seconds = _prepare(spec, hyper, cfg, task, model, train_data, out_dir, dev)
    if prepare_seconds is not None:  # prepare may reallocate ranks (EVA): count again
        injected = dataclasses.replace(
            injected,
            adapter_params=sum(p.numel() for p in adapter_parameters(model) if p.requires_grad),
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        )
    return JobSetup(task, model, injected, spec, hyper, train_data, evaluated, plan,
                    prepare_seconds)  # fmt: skip


def enable_grad_ckpt(model: torch.nn.Module) -> None:
    """Hugging Face's activation checkpointing of the base model's layers; RNG state is kept, so
    dropout masks and results are those of a run without it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise DeterministicFailure(
            f"--grad-ckpt: {type(model).__name__} does not support gradient checkpointing"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # Hugging Face also hooks the embeddings to output tensors that require grad, which only
    # reentrant checkpointing needs (and vmap, in packed training, forbids): undo it.
    if hasattr(model, "disable_input_require_grads"):
        model.disable_input_require_grads()


def autocast_for(cfg: JobConfig, dev: torch.device):  # noqa: ANN201
    if cfg.precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return nullcontext()


def final_result(setup: JobSetup, cfg: JobConfig, history: _History, step_seconds: list[float],
                 seconds: float, peak_mb: float, resumed_from: int | None,
                 extras: dict[str, float] | None = None) -> TrainResult:  # fmt: skip
    """The job's metrics and summary; the variant's report reads the model as trained."""
    result = _result(cfg, setup.task, history, setup.injected, setup.plan, step_seconds, seconds,
                     peak_mb, resumed_from)  # fmt: skip
    extras = dict(extras or {})
    if setup.prepare_seconds is not None:
        extras["prepare_seconds"] = setup.prepare_seconds
    if setup.spec.report is not None:
        extras.update(setup.spec.report(setup.model, setup.hyper))
    result.summary.update(extras)
    result.metrics += [("summary", name, 0, None, float(v)) for name, v in extras.items()]
    return result


def _optimizer_step(cfg, task, model, data, order, step_in_epoch, dev, autocast, trainable,  # noqa: ANN001
                    spec, hyper):  # fmt: skip
    """Forward/backward over the step's micro-batches; returns the mean task loss and the
    mean extra (variant) loss, None when the variant adds none."""
    start = step_in_epoch * cfg.grad_accum * cfg.batch_size
    stop = min(start + cfg.grad_accum * cfg.batch_size, len(order))
    n_examples = stop - start
    total, extra_total = 0.0, None
    for offset in range(start, stop, cfg.batch_size):
        indices = order[offset : min(offset + cfg.batch_size, stop)]
        batch = _to(task.collate([data[i] for i in indices]), dev)
        with autocast:
            loss = task.loss(model, batch)
            extra = spec.extra_loss(model, hyper) if spec.extra_loss is not None else None
        # Weight by size so accumulated micro-batches equal one large batch exactly.
        weight = len(indices) / n_examples
        ((loss if extra is None else loss + extra) * weight).backward()
        total += loss.item() * weight
        if extra is not None:
            extra_total = (extra_total or 0.0) + extra.item() * weight
    if cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
    return total, extra_total


def _scheduler(cfg, optimizer, plan, spec, hyper):  # noqa: ANN001, ANN202
    scheduler = get_scheduler(
        cfg.schedule,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )
    if spec.lr_multiplier is None:
        return scheduler
    multiplied = [
        _multiplied(base, spec.lr_multiplier, plan.total_steps, hyper)
        for base in scheduler.lr_lambdas
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplied)


def _multiplied(base, multiplier, total_steps: int, params):  # noqa: ANN001, ANN202
    """A schedule factor times a variant's multiplier (ReLoRA's jagged re-warm-up). A plain
    function on purpose: LambdaLR checkpoints callable objects' state, and these hold hooks."""

    def factor(step: int) -> float:
        return base(step) * multiplier(step, total_steps, params)

    return factor


def _check_groups(groups: list[dict], trainable: list[torch.nn.Parameter], variant: str) -> None:
    grouped = [id(p) for group in groups for p in group["params"]]
    if sorted(grouped) != sorted(id(p) for p in trainable):
        raise DeterministicFailure(
            f"variant {variant!r}: its optimizer groups must hold every trainable parameter "
            "exactly once"
        )


PREPARED_NAME = "prepared.pt"


def _prepare(spec, hyper, cfg, task, model, data, out_dir: Path, dev) -> float | None:  # noqa: ANN001
    """Run the variant's data-driven init once; a resumed job re-applies the saved result."""
    if spec.prepare is None:
        return None
    path = out_dir / PREPARED_NAME
    started = time.perf_counter()
    if path.exists():
        spec.restore(model, torch.load(path, map_location=dev, weights_only=True), hyper)
    else:

        def batches(n: int):  # noqa: ANN202
            # The job's own data in an order of its own, cycling when n batches exceed it.
            order = _epoch_order(len(data), cfg.seed, -1)
            for i in range(n):
                start = (i * cfg.batch_size) % len(order)
                indices = (order + order)[start : start + cfg.batch_size]
                yield _to(task.collate([data[j] for j in indices]), dev)

        state = spec.prepare(PrepareContext(model, batches, task.loss, hyper, dev))
        save_checkpoint(out_dir, state, name=PREPARED_NAME)
    model.train()
    # Training starts from the same RNG state whether prepare ran now or was restored.
    torch.manual_seed(cfg.seed + 1)
    return time.perf_counter() - started


def _evaluate(cfg, task: Task, model, data: Sequence[dict], dev, autocast,  # noqa: ANN001
              split: str = "test") -> Evaluation:  # fmt: skip
    model.eval()
    size = task.eval_batch_size or cfg.batch_size
    batches = (_to(task.collate_eval(data[i : i + size]), dev) for i in range(0, len(data), size))
    with autocast:
        evaluation = task.evaluate(model, batches, split=split)
    model.train()
    return evaluation


def _to(batch: dict[str, torch.Tensor], dev: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}


def _rank(score: float) -> float:
    # NaN compares false both ways, so an epoch scored NaN would otherwise win or lose at random.
    return score if math.isfinite(score) else -math.inf


def _result(cfg, task, history, injected, plan, step_seconds, seconds, peak_mb, resumed_from):  # noqa: ANN001
    metrics: list[tuple[str, str, int, int | None, float]] = []
    for step, epoch, loss, lr in history.losses:
        metrics.append(("train", "loss", step, epoch, loss))
        metrics.append(("train", "lr", step, epoch, lr))
    metrics += [("train", "extra_loss", step, epoch, v) for step, epoch, v in history.extras]
    # The reported (test) split keeps the metric split name "eval" that older databases hold.
    for epoch, step, scores in history.evals:
        metrics += [("eval", name, step, epoch, value) for name, value in scores.items()]
    for epoch, step, scores in history.selects:
        metrics += [("select", name, step, epoch, value) for name, value in scores.items()]
    primary = task.info.primary_metric
    best_epoch, _, best_scores = max(
        history.evals, key=lambda row: (_rank(row[2][primary]), -row[0])
    )
    summary = {
        f"best_{primary}": best_scores[primary],
        "best_epoch": float(best_epoch),
        "total_steps": float(plan.total_steps),
        "adapter_params": float(injected.adapter_params),
        "trainable_params": float(injected.trainable_params),
        "step_time_s": sum(step_seconds) / len(step_seconds) if step_seconds else float("nan"),
        "train_seconds": seconds,
        "peak_memory_mb": peak_mb,
    }
    metrics += [("summary", name, 0, None, value) for name, value in summary.items()]
    outcomes = [("eval", epoch, {k: t.numpy() for k, t in arrays.items()})
                for epoch, arrays in history.outcomes]  # fmt: skip
    return TrainResult(metrics=metrics, summary=summary, resumed_from_step=resumed_from,
                       outcomes=outcomes)  # fmt: skip
