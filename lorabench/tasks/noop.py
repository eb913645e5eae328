"""`noop`: a 4x4 linear model on 8 random points, so a job runs the whole worker path in
milliseconds: claim, child process, adapter injection, an optimizer step, evaluation,
checkpoint, metrics written back. Scale and fault-injection tests run thousands of them.

Splits: `train` and `test` are random points drawn by the job's seed (as they always were);
`select` is `eval_size` fresh points from a fixed seed, the same for every job. The data are
an unlimited synthetic source, so fresh points are held out just as carved ones would be, and
the training set stays what it was. The score is minus the mean squared error; outcomes are
the model's outputs and the targets flattened row by row (4 values per example), so that
-mean((prediction - target)^2) recomputes the score (exactly, when the evaluation batches are
of one size).

`task_params` can make it slow (`sleep_s` per step) or fail on purpose at step `fault_step` of
each attempt, the way real jobs fail: a NaN loss (deterministic), a simulated CUDA OOM or a
full disk (transient), an error (deterministic) or the process killed by SIGKILL (a crash).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from lorabench.catalog.tasks.noop import NOOP, NOOP_MODEL, NoopParams
from lorabench.tasks.base import Batch, Evaluation, TaskSettings, register_task, split_name
from lorabench.tasks.models import base_dtype

_WIDTH = 4
_SELECT_SEED = 2**40  # above every job's data seed (seed * 2 + 1 < 2**33): never a job's data


class NoopModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(_WIDTH, _WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Noop:
    head_modules: tuple[str, ...] = ()
    eval_batch_size = None

    def __init__(self, settings: TaskSettings) -> None:
        if settings.model != NOOP_MODEL:
            raise ValueError(f"task noop builds its own model; model must be {NOOP_MODEL!r}")
        self.info = NOOP
        self.settings = settings
        self.params: NoopParams = settings.params  # type: ignore[assignment]
        eval_size = settings.eval_size or 4
        select_size = eval_size if settings.select_split else 0
        self.sizes = {"train": settings.train_size or 8, "select": select_size, "test": eval_size}
        self.seeds = {
            "train": settings.seed * 2,
            "select": _SELECT_SEED,
            "test": settings.seed * 2 + 1,
        }
        self.steps_this_attempt = 0

    def load_model(self) -> nn.Module:
        return NoopModel().to(base_dtype(self.settings.base_dtype))

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        split = split_name(split)
        generator = torch.Generator().manual_seed(self.seeds[split])
        x = torch.randn(self.sizes[split], _WIDTH, generator=generator)
        return [{"x": row, "y": row.flip(0)} for row in x]

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return {"x": torch.stack([e["x"] for e in examples]),
                "y": torch.stack([e["y"] for e in examples])}  # fmt: skip

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return self.collate(examples)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        self.steps_this_attempt += 1
        if self.params.sleep_s:
            time.sleep(self.params.sleep_s)
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        if self.steps_this_attempt == self.params.fault_step:
            loss = self._fault(loss)
        return loss

    def _fault(self, loss: torch.Tensor) -> torch.Tensor:
        fault = self.params.fault
        if fault == "nan":
            return loss * float("nan")
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated by task noop)")
        if fault == "disk-full":
            raise OSError(errno.ENOSPC, "No space left on device (simulated by task noop)")
        if fault == "error":
            raise RuntimeError("simulated failure (task noop)")
        if fault == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return loss

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        errors, predictions, targets = [], [], []
        for batch in batches:
            output = model(batch["x"])
            errors.append(torch.nn.functional.mse_loss(output, batch["y"]).item())
            predictions += output.flatten().tolist()
            targets += batch["y"].flatten().tolist()
        return Evaluation({"score": -sum(errors) / len(errors)},
                          {"prediction": predictions, "target": targets})  # fmt: skip


register_task(NOOP, Noop)
