"""What a worker shows on the terminal: one rich progress bar per job, one line per outcome."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def describe(job_id: int, config: dict[str, Any]) -> str:
    return (
        f"job {job_id} {config['variant']} lr={config['lr']:g} seed={config['seed']} "
        f"{config['task']}"
    )


class WorkerView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._bar: Any = None

    def __enter__(self) -> WorkerView:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def job_started(self, job_id: int, config: dict[str, Any], attempt: int, pack: int = 1) -> None:
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        if pack > 1:
            suffix += f" + {pack - 1} packed"
        self._bar = self.progress.add_task(
            describe(job_id, config) + suffix, total=None, epoch="-", loss="-"
        )

    def update(self, event: dict[str, Any]) -> None:
        if self._bar is None:
            return
        loss = f"{event['loss']:.4f}" if "loss" in event else "eval"
        self.progress.update(
            self._bar,
            completed=event["step"],
            total=event["total_steps"],
            epoch=f"{event['epoch']}/{event['epochs']}",
            loss=loss,
        )

    def job_ended(self, message: str) -> None:
        if self._bar is not None:
            self.progress.remove_task(self._bar)
            self._bar = None
        self._print(message)

    def say(self, message: str) -> None:
        self._print(message)

    def _print(self, message: str) -> None:
        # Into a pipe (a log file, `work --gpu 0,1`'s prefixing of each worker's lines) a
        # message stays one line: wrapped at 80 columns it would read as two.
        self.console.print(message, soft_wrap=not self.console.is_terminal)
