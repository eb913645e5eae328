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

from lorabench.config import JobConfig
from lorabench.search import SearchSpec, rung_steps
from lorabench.tasks import Evaluation, Task, TaskSettings, build_task, build_task_params
from lorabench.train.checkpoint import save_checkpoint
from lorabench.train.errors import DeterministicFailure, Interrupted
from lorabench.train.state import JobRun, Observer
from lorabench.train.step import Epoch, Forward, accumulate, advance, epoch_order, to_device
from lorabench.variants import (
    InjectReport,
    PrepareContext,
    adapter_parameters,
    build_params,
    get_variant,
    inject,
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
    # A halving job: its rung's result, and whether it stopped there short of its full length
    # (paused: `metrics` hold its history so far, `summary` is empty).
    rung: RungScore | None = None
    paused: bool = False


@dataclass(frozen=True)
class RungScore:
    """Where a halving job's rung ended and its scores there: the task's primary metric on the
    select split (what promotion reads) and on the reported split."""

    step: int
    score: float
    test_score: float


@dataclass(frozen=True)
class RungPlan:
    """The rung a halving job trains to (index `rung` of `rung_steps(search, ...)`)."""

    search: SearchSpec
    rung: int

    def end(self, plan: Schedule) -> int:
        steps = rung_steps(self.search, total_steps=plan.total_steps,
                           steps_per_epoch=plan.steps_per_epoch)  # fmt: skip
        return steps[min(self.rung, len(steps) - 1)]


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


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
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
            base_dtype=cfg.base_dtype,
        ),
    )
    model = task.load_model()
    if cfg.precision != "bf16" and _has_16bit_parameters(model):
        # Only base_dtype "auto" gets here (the config refuses bf16 with fp32 explicitly).
        raise DeterministicFailure(
            f"base_dtype 'auto' loaded {cfg.model!r} in its 16-bit dtype, which computes in "
            'bf16: set precision = "bf16" (or base_dtype = "fp32")'
        )
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
    _trainable_in_fp32(model)
    return task, model, injected


_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _has_16bit_parameters(model: torch.nn.Module) -> bool:
    return any(p.dtype in _LOW_PRECISION for p in model.parameters())


def _trainable_in_fp32(model: torch.nn.Module) -> None:
    """Master weights: a 16-bit base's trainable heads (adapters are created in fp32) become
    fp32, so optimizer updates far below a bf16 ulp accumulate; autocast computes in bf16."""
    for param in model.parameters():
        if param.requires_grad and param.dtype in _LOW_PRECISION:
            param.data = param.data.float()


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
    observer: Observer | None = None,
    rung: RungPlan | None = None,
) -> TrainResult:
    """Train and evaluate one job, resuming from `out_dir`'s checkpoint if there is one.

    `rung`: a halving job trains only to the end of that rung (`RungPlan.end`), with the
    schedule of its full length, so that going on later from the checkpoint is the same run;
    short of its full length it returns a paused result with the rung's scores.

    `observer` sees every value measured and every checkpoint (experiment tracking).
    `grad_ckpt` recomputes the base model's activations in backward (memory, not results).
    `compile` runs the training forward/backward through `torch.compile` (same math, other
    rounding; dropout draws from the compiler's generator); evaluation stays eager, since
    generation's changing shapes would recompile at every length."""
    stop = should_stop or (lambda: False)
    setup = setup_job(cfg, out_dir, torch.device(device))
    if grad_ckpt:
        enable_grad_ckpt(setup.model)
    # A variant's extra loss reads what the forward pass left on its modules, which a compiled
    # graph need not leave: such variants train eagerly.
    compiled = compile and setup.spec.extra_loss is None
    forward = _solo_forward(setup, torch.compile(setup.model) if compiled else setup.model)
    run = JobRun.solo(setup, out_dir, report=on_progress, observer=observer)
    reset_peak_memory(setup.device)
    started = time.perf_counter()
    end = setup.plan.total_steps if rung is None else rung.end(setup.plan)
    if rung is not None and "select" not in setup.evaluated:
        raise DeterministicFailure(
            f"search 'halving' ranks learning rates on the select split; task {cfg.task} "
            "held none out for this job"
        )
    for index in range(len(run.history.evals), setup.plan.epochs):
        epoch = Epoch.of(setup, index)
        setup.model.train()
        while run.step < min(epoch.last_step, end):
            tick = time.perf_counter()
            (loss,), extra = accumulate(setup, forward, [run], epoch=epoch, step=run.step)
            advance(run, loss, extra, epoch=epoch, started=tick)
            if run.error is not None:
                raise run.error
            if stop():
                run.save()
                raise Interrupted(run.step)
            if epoch.checkpoints_at(run.step, checkpoint_every):
                run.save()
        if run.step < epoch.last_step:  # the rung ends inside this epoch
            run.save()
            return paused_result(setup, run)
        run.report_eval(index)
        for split, data in setup.evaluated.items():
            run.record(split, index + 1, evaluate(setup, setup.model, data, split))
        run.save()
        if run.step >= end and run.step < setup.plan.total_steps:  # at an epoch's end
            return paused_result(setup, run)
    result = final_result(setup, run, seconds=time.perf_counter() - started,
                          peak_mb=peak_memory_mb(setup.device),
                          extras={"compiled": 1.0} if compiled else None)  # fmt: skip
    if rung is not None:
        result.rung = rung_score(setup, run)
    return result


def paused_result(setup: JobSetup, run: JobRun) -> TrainResult:
    """A halving job at the end of a rung short of its full length: its history so far and
    the rung's scores."""
    metrics, outcomes = _history_rows(run)
    return TrainResult(metrics=metrics, summary={}, resumed_from_step=run.resumed_from,
                       outcomes=outcomes, rung=rung_score(setup, run), paused=True)  # fmt: skip


def rung_score(setup: JobSetup, run: JobRun) -> RungScore:
    """The primary metric on the select and reported splits at the job's current step: the
    epoch's evaluation when the step ends an epoch, else evaluated now (a resumed job asks
    again, and gets the same answer from the same weights)."""
    primary = setup.task.info.primary_metric
    scores = {}
    for split, kept in (("select", run.history.selects), ("test", run.history.evals)):
        at_step = [values for _, step, values in kept if step == run.step]
        if at_step:
            scores[split] = at_step[-1][primary]
        else:
            evaluation = evaluate(setup, setup.model, setup.evaluated[split], split)
            scores[split] = evaluation.scores[primary]
    return RungScore(step=run.step, score=scores["select"], test_score=scores["test"])


@dataclass
class JobSetup:
    """A job's model with adapters (after any data-driven init), data and step plan; in a pack,
    those of the pack's first job, which the others share."""

    cfg: JobConfig
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
    device: torch.device
    autocast: Any  # the context every forward pass runs in (see `autocast_for`)


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
    prepare_seconds = _prepare(cfg, out_dir, task=task, model=model, spec=spec, hyper=hyper,
                               data=train_data, dev=dev)  # fmt: skip
    if prepare_seconds is not None:  # prepare may reallocate ranks (EVA): count again
        injected = dataclasses.replace(
            injected,
            adapter_params=sum(p.numel() for p in adapter_parameters(model) if p.requires_grad),
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        )
    return JobSetup(cfg=cfg, task=task, model=model, injected=injected, spec=spec, hyper=hyper,
                    train_data=train_data, evaluated=evaluated, plan=plan,
                    prepare_seconds=prepare_seconds, device=dev,
                    autocast=autocast_for(cfg, dev))  # fmt: skip


def enable_grad_ckpt(model: torch.nn.Module) -> None:
    """Hugging Face's activation checkpointing of the base model's layers; RNG state is kept, so
    dropout masks and results are those of a run without it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise DeterministicFailure(
            f"--grad-ckpt: {type(model).__name__} does not support gradient checkpointing"
        )
    kwargs = {"use_reentrant": False}
    # transformers 5 renamed it; the old name is deprecated and goes in v6.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # Hugging Face also hooks the embeddings to output tensors that require grad, which only
    # reentrant checkpointing needs (and vmap, in packed training, forbids): undo it.
    if hasattr(model, "disable_input_require_grads"):
        model.disable_input_require_grads()


def autocast_for(cfg: JobConfig, dev: torch.device):  # noqa: ANN201
    if cfg.precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return nullcontext()


def evaluate(setup: JobSetup, model: Any, data: Sequence[dict], split: str) -> Evaluation:
    """`model`'s evaluation on `data` (one split): the job's model, or a stand-in for it."""
    model.eval()
    task, size = setup.task, setup.task.eval_batch_size or setup.cfg.batch_size
    batches = (to_device(task.collate_eval(data[i : i + size]), setup.device)
               for i in range(0, len(data), size))  # fmt: skip
    with setup.autocast:
        evaluation = task.evaluate(model, batches, split=split)
    model.train()
    return evaluation


def final_result(
    setup: JobSetup,
    run: JobRun,
    *,
    seconds: float,
    peak_mb: float,
    extras: dict[str, float] | None = None,
) -> TrainResult:
    """The job's metrics and summary; the variant's report reads the model as trained."""
    result = _result(setup, run, seconds=seconds, peak_mb=peak_mb)
    extras = dict(extras or {})
    if setup.prepare_seconds is not None:
        extras["prepare_seconds"] = setup.prepare_seconds
    if setup.spec.report is not None:
        extras.update(setup.spec.report(setup.model, setup.hyper))
    result.summary.update(extras)
    result.metrics += [("summary", name, 0, None, float(v)) for name, v in extras.items()]
    return result


def _solo_forward(setup: JobSetup, model: torch.nn.Module) -> Forward:
    """The task loss of `model` (the job's model or its compiled self), and the extra loss."""
    task, spec, hyper = setup.task, setup.spec, setup.hyper

    def forward(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        with setup.autocast:
            loss = task.loss(model, batch)
            extra = spec.extra_loss(model, hyper) if spec.extra_loss is not None else None
        return loss, extra

    return forward


PREPARED_NAME = "prepared.pt"


def _prepare(  # noqa: PLR0913
    cfg: JobConfig,
    out_dir: Path,
    *,
    task: Task,
    model: torch.nn.Module,
    spec: Any,
    hyper: Any,
    data: Sequence[dict[str, Any]],
    dev: torch.device,
) -> float | None:
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
            order = epoch_order(len(data), cfg.seed, -1)
            for i in range(n):
                start = (i * cfg.batch_size) % len(order)
                indices = (order + order)[start : start + cfg.batch_size]
                yield to_device(task.collate([data[j] for j in indices]), dev)

        state = spec.prepare(PrepareContext(model, batches, task.loss, hyper, dev))
        save_checkpoint(out_dir, state, name=PREPARED_NAME)
    model.train()
    # Training starts from the same RNG state whether prepare ran now or was restored.
    torch.manual_seed(cfg.seed + 1)
    return time.perf_counter() - started


def _rank(score: float) -> float:
    # NaN compares false both ways, so an epoch scored NaN would otherwise win or lose at random.
    return score if math.isfinite(score) else -math.inf


def _history_rows(
    run: JobRun,
) -> tuple[list[tuple[str, str, int, int | None, float]], list[tuple[str, int, dict]]]:
    """The job's history as metric rows (split, name, step, epoch, value) and outcome rows."""
    history = run.history
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
    outcomes = [("eval", epoch, {k: t.numpy() for k, t in arrays.items()})
                for epoch, arrays in history.outcomes]  # fmt: skip
    return metrics, outcomes


def _result(setup: JobSetup, run: JobRun, *, seconds: float, peak_mb: float) -> TrainResult:
    task, injected, history = setup.task, setup.injected, run.history
    step_seconds = run.step_seconds
    metrics, outcomes = _history_rows(run)
    primary = task.info.primary_metric
    best_epoch, _, best_scores = max(
        history.evals, key=lambda row: (_rank(row[2][primary]), -row[0])
    )
    summary = {
        f"best_{primary}": best_scores[primary],
        "best_epoch": float(best_epoch),
        "total_steps": float(setup.plan.total_steps),
        "adapter_params": float(injected.adapter_params),
        "trainable_params": float(injected.trainable_params),
        "step_time_s": sum(step_seconds) / len(step_seconds) if step_seconds else float("nan"),
        "train_seconds": seconds,
        "peak_memory_mb": peak_mb,
    }
    metrics += [("summary", name, 0, None, value) for name, value in summary.items()]
    return TrainResult(metrics=metrics, summary=summary, resumed_from_step=run.resumed_from,
                       outcomes=outcomes)  # fmt: skip
