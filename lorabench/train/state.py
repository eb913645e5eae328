"""What one job owns while it trains, alone or in a pack: its trainable tensors, optimizer,
schedule and history, resumed from and written to its checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from transformers import get_scheduler

from lorabench.config import JobConfig
from lorabench.tasks import Evaluation
from lorabench.train.checkpoint import load_checkpoint, save_checkpoint
from lorabench.train.errors import DeterministicFailure
from lorabench.variants import (
    adapter_extra_state,
    adapter_state_dict,
    load_adapter_extra_state,
    load_adapter_state_dict,
)

if TYPE_CHECKING:
    from lorabench.train.loop import JobSetup

Report = Callable[[dict[str, Any]], None]


class Observer(Protocol):
    """Sees what a job measures, as it measures it (experiment tracking: `lorabench.tracking`).
    `log` gets each optimizer step's `train/loss`, `train/lr`, `train/epoch` (and
    `train/extra_loss`) and each epoch's scores as `select/NAME` and `test/NAME`, by step;
    `saved` follows every checkpoint. It must not raise: training does not wait on it."""

    def log(self, step: int, values: Mapping[str, float]) -> None: ...

    def saved(self, step: int) -> None: ...


class _NoObserver:
    def log(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def saved(self, step: int) -> None:
        pass


NO_OBSERVER: Observer = _NoObserver()


@dataclass
class History:
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
    def from_state(cls, state: dict[str, Any]) -> History:
        # A checkpoint written before select and outcomes existed has neither.
        return cls(
            losses=[(int(s), int(e), float(v), float(lr)) for s, e, v, lr in state["losses"]],
            evals=[(int(e), int(s), dict(m)) for e, s, m in state["evals"]],
            extras=[(int(s), int(e), float(v)) for s, e, v in state["extras"]],
            selects=[(int(e), int(s), dict(m)) for e, s, m in state.get("selects", [])],
            outcomes=[(int(e), dict(a)) for e, a in state.get("outcomes", [])],
        )


def _ignore(_event: dict[str, Any]) -> None:
    pass


@dataclass
class JobRun:
    """One job in training. Alone (`JobRun.solo`) it trains the model's own tensors and owns
    the process's random generator, which its checkpoint restores. In a pack (`JobRun.in_pack`)
    it trains its own copies of them, leaves the generator (shared by the pack) alone, and its
    checkpoints hold the adapters' extra state as it was when the pack began. Either way the
    checkpoint has one format, so a job can resume alone or in a pack alike."""

    cfg: JobConfig
    out_dir: Path
    setup: JobSetup
    params: dict[str, torch.Tensor]  # the trainable tensors, by the model's parameter names
    optimizer: torch.optim.Optimizer
    scheduler: Any
    report: Report = _ignore  # progress events ("train" each step, "eval" each epoch)
    observer: Observer = NO_OBSERVER  # every value measured, and every checkpoint (tracking)
    # In a pack: the adapters' extra state when the pack began, which its checkpoints hold.
    # None: the job trains alone, on the model's own tensors.
    pack_extra_state: dict[str, torch.Tensor] | None = None
    history: History = field(default_factory=History)
    step: int = 0  # optimizer steps taken
    resumed_from: int | None = None
    step_seconds: list[float] = field(default_factory=list)
    error: BaseException | None = None  # what ended the job early (a pack goes on without it)

    @property
    def alone(self) -> bool:
        return self.pack_extra_state is None

    @classmethod
    def solo(
        cls,
        setup: JobSetup,
        out_dir: Path,
        *,
        report: Report | None = None,
        observer: Observer | None = None,
    ) -> JobRun:
        """The job `setup` was built for, training the model's own tensors."""
        params = {n: p for n, p in setup.model.named_parameters() if p.requires_grad}
        return cls._open(setup, setup.cfg, out_dir, params, report=report, observer=observer)

    @classmethod
    def in_pack(
        cls,
        setup: JobSetup,
        cfg: JobConfig,
        out_dir: Path,
        *,
        initial: dict[str, torch.Tensor],
        extra_state: dict[str, torch.Tensor],
        report: Report,
        observer: Observer | None = None,
    ) -> JobRun:
        """One job of a pack on `setup`'s model: its own leaves, starting from `initial`."""
        params = {n: t.clone().requires_grad_() for n, t in initial.items()}
        return cls._open(setup, cfg, out_dir, params, report=report, observer=observer,
                         pack_extra_state=extra_state)  # fmt: skip

    @classmethod
    def _open(
        cls,
        setup: JobSetup,
        cfg: JobConfig,
        out_dir: Path,
        params: dict[str, torch.Tensor],
        *,
        report: Report | None,
        observer: Observer | None = None,
        pack_extra_state: dict[str, torch.Tensor] | None = None,
    ) -> JobRun:
        groups = _optimizer_groups(setup, cfg, params, alone=pack_extra_state is None)
        _check_groups(groups, list(params.values()), cfg.variant)
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        run = cls(cfg=cfg, out_dir=out_dir, setup=setup, params=params, optimizer=optimizer,
                  scheduler=_scheduler(cfg, optimizer, setup), report=report or _ignore,
                  observer=observer or NO_OBSERVER,
                  pack_extra_state=pack_extra_state)  # fmt: skip
        run.resume()
        return run

    def resume(self) -> None:
        """Continue from `out_dir`'s checkpoint, if it holds this job (the same config)."""
        saved = load_checkpoint(self.out_dir)
        if saved is None or saved.get("config_hash") != self.cfg.config_hash:
            return
        model = self.setup.model
        if self.alone:
            load_adapter_state_dict(model, saved["adapter"])
        else:
            with torch.no_grad():
                for name, tensor in self.params.items():
                    tensor.copy_(saved["adapter"][name])
        load_adapter_extra_state(model, saved["adapter_extra"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.alone:  # a pack's jobs share the generator, so none of them restores it
            torch.set_rng_state(saved["rng_cpu"])
        self.history, self.step = History.from_state(saved["history"]), int(saved["step"])
        self.resumed_from = self.step

    def save(self) -> None:
        """Write the job's checkpoint (atomically; see checkpoint.py)."""
        model = self.setup.model
        adapter = adapter_state_dict(model) if self.alone else self.params
        extra = adapter_extra_state(model) if self.alone else self.pack_extra_state
        save_checkpoint(self.out_dir, {
            "config_hash": self.cfg.config_hash,
            "step": self.step,
            "adapter": {k: v.detach().cpu() for k, v in adapter.items()},
            "adapter_extra": {k: v.cpu() for k, v in extra.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "history": self.history.to_state(),
        })  # fmt: skip
        self.observer.saved(self.step)

    def record(self, split: str, epoch: int, evaluation: Evaluation) -> None:
        """Keep an epoch's evaluation of `split` ("select" or "test") in the history."""
        self.history.record(split, epoch, self.step, evaluation)
        self.observer.log(self.step, {f"{split}/{k}": v for k, v in evaluation.scores.items()})

    def report_eval(self, epoch: int) -> None:
        plan = self.setup.plan
        self.report({"phase": "eval", "epoch": epoch + 1, "epochs": plan.epochs,
                     "step": self.step, "total_steps": plan.total_steps})  # fmt: skip


def _optimizer_groups(
    setup: JobSetup, cfg: JobConfig, params: dict[str, torch.Tensor], *, alone: bool
) -> list[dict[str, Any]]:
    if setup.spec.param_groups is None:
        return [{"params": list(params.values())}]
    groups = setup.spec.param_groups(setup.model, cfg.lr, setup.hyper)
    if alone:
        return groups
    # The variant groups the model's parameters; map each to this job's own tensor.
    name_of = {id(p): n for n, p in setup.model.named_parameters()}
    return [{**g, "params": [params[name_of[id(p)]] for p in g["params"]]} for g in groups]


def _check_groups(groups: list[dict], trainable: list[torch.nn.Parameter], variant: str) -> None:
    grouped = [id(p) for group in groups for p in group["params"]]
    if sorted(grouped) != sorted(id(p) for p in trainable):
        raise DeterministicFailure(
            f"variant {variant!r}: its optimizer groups must hold every trainable parameter "
            "exactly once"
        )


def _scheduler(cfg: JobConfig, optimizer: torch.optim.Optimizer, setup: JobSetup) -> Any:
    plan, spec = setup.plan, setup.spec
    scheduler = get_scheduler(
        cfg.schedule,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )
    if spec.lr_multiplier is None:
        return scheduler
    multiplied = [
        _multiplied(base, spec.lr_multiplier, plan.total_steps, setup.hyper)
        for base in scheduler.lr_lambdas
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplied)


def _multiplied(base, multiplier, total_steps: int, params):  # noqa: ANN001, ANN202
    """A schedule factor times a variant's multiplier (ReLoRA's jagged re-warm-up). A plain
    function on purpose: LambdaLR checkpoints callable objects' state, and these hold hooks."""

    def factor(step: int) -> float:
        return base(step) * multiplier(step, total_steps, params)

    return factor
