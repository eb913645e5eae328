"""TensorBoard: one run folder per job, `<log dir>/tensorboard/<run name>`.

Written with PyTorch's `SummaryWriter` (it needs the `tensorboard` package). A resumed job
opens the same folder with `purge_step` one past the last step recorded as logged: TensorBoard
then discards whatever an earlier attempt wrote above it (steps a hard kill left unrecorded,
which the resumed trainer logs again), so each step is shown once. A first attempt purges
from step 0, clearing a folder that a job of another database left under the same name. The
config goes in once, at step 0: as text and as HParams (the HParams dashboard compares runs).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lorabench.tracking.base import RunInfo, Status, flat_params

FOLDER = "tensorboard"
_STAMP = re.compile(r"^events\.out\.tfevents\.(\d+)\.")


class TensorBoardRun:
    def __init__(self, info: RunInfo, saved: dict[str, Any] | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.folder = Path(info.log_dir) / FOLDER / info.name
        last = [int(v) for v in ((saved or {}).get("last") or {}).values()]
        purge = max(last, default=-1) + 1
        _after_existing_files(self.folder)
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge)
        if purge == 0:  # nothing kept from before: this attempt writes the config
            self._write_config(info)

    def _write_config(self, info: RunInfo) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = json.dumps(info.config, indent=2, sort_keys=True)
        self.writer.add_text("config", f"```json\n{text}\n```", global_step=0)
        _, session_start, _ = hparams(flat_params(info.config), {})
        self.writer.file_writer.add_summary(session_start, global_step=0)

    def logged(self) -> dict[str, int]:
        return {}  # the purge settles what the event files hold above the recorded steps

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def summary(self, step: int, values: Mapping[str, float]) -> None:
        self.log(step, values)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: Status) -> None:
        self.writer.close()

    def state(self) -> dict[str, Any]:
        return {"folder": str(self.folder)}


def open_run(info: RunInfo, saved: dict[str, Any] | None) -> TensorBoardRun:
    return TensorBoardRun(info, saved)


def _after_existing_files(folder: Path) -> None:
    """Wait until the clock is past the newest event file's second. TensorBoard reads a run's
    files in name order, and names start with the creating second: a file of this second
    might sort before an earlier attempt's and have its purge applied first (only a job
    resumed within a second of starting, in practice a test, ever waits)."""
    stamps = [int(m.group(1)) for p in folder.glob("events.out.tfevents.*")
              if (m := _STAMP.match(p.name))]  # fmt: skip
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
