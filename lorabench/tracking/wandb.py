"""Weights & Biases: one run per job, in project `$WANDB_PROJECT` (default "lorabench"), grouped
by sweep, its config the job's config.

The run's id is drawn on the job's first attempt and kept (`state`), so a resumed job reopens
the same run (`resume="allow"`). W&B's own settings apply: `WANDB_MODE=offline` writes the run
under `<log dir>/wandb/` (or `$WANDB_DIR`) for a later `wandb sync`, which is what compute nodes
without network want; `WANDB_API_KEY`, `WANDB_ENTITY` and the rest as usual. Several runs may
be open in one process (a pack of jobs), hence `reinit="create_new"`. W&B's console capture is
off (the worker owns the terminal); its system metrics stay on.

After a hard kill, online runs drop the steps below the run's current step (W&B's rule), so
nothing is shown twice; an offline attempt is a folder of its own, and `wandb sync` of the
killed attempt and its successor may then show the steps between the last checkpoint and the
kill twice (the killed attempt's copy and the successor's).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lorabench.tracking.base import RunInfo, Status

DEFAULT_PROJECT = "lorabench"


class WandbRun:
    def __init__(self, info: RunInfo, saved: dict[str, Any] | None) -> None:
        import wandb

        self.run_id = str((saved or {}).get("run_id") or _new_id(info))
        folder = None if os.environ.get("WANDB_DIR") else Path(info.log_dir)  # W&B adds wandb/
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            group=info.sweep,
            name=info.name,
            id=self.run_id,
            resume="allow",
            config=info.config,
            job_type="lorabench",
            dir=None if folder is None else str(folder),
            reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )

    def logged(self) -> dict[str, int]:
        return {}  # online, W&B itself ignores steps below the run's current step

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def summary(self, step: int, values: Mapping[str, float]) -> None:
        self.run.summary.update(dict(values))

    def flush(self) -> None:
        pass  # each record goes to W&B's service process at once; it outlives a killed job

    def close(self, status: Status) -> None:
        if status == "interrupted":  # shown as preempted: the job resumes this run later
            self.run.mark_preempting()
        self.run.finish(exit_code=0 if status == "finished" else 1)

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


def open_run(info: RunInfo, saved: dict[str, Any] | None) -> WandbRun:
    return WandbRun(info, saved)


def _new_id(info: RunInfo) -> str:
    # Unique per job and database (job ids restart in a new database): the config hash says
    # which job, the random part tells two databases' runs of one config apart.
    return f"{info.config_hash[:12]}-{secrets.token_hex(4)}"
