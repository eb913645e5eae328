"""One job's runs on its tracking backends, fed by the trainer in the job's training process.

A resumed job continues the same runs: `<job folder>/tracking.json` keeps each backend's run
(its id) and the last step of every metric it logged, written at each checkpoint and when the
job stops, after the backends have flushed. The next attempt reopens those runs and skips
every step at or below those (the resumed trainer recomputes the steps after its checkpoint),
so nothing is logged twice. After a hard kill (SIGKILL, a lost machine) the steps between the
last checkpoint and the kill may have reached a backend without being recorded here; each
backend settles them its own way (see `tensorboard.py`, `mlflow.py`, `wandb.py`).

A backend that raises is closed and dropped with one warning; the job goes on without it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lorabench.tracking.base import (
    BACKENDS,
    Backend,
    RunInfo,
    Status,
    TrackingTarget,
    install_hint,
    run_name,
)

STATE_NAME = "tracking.json"
_MESSAGE_CHARS = 300  # of a backend's error, in the warning


class JobTracker:
    """The trainer's observer for one job (`train.state.Observer`): `log` each step's and each
    evaluation's values, `saved` at every checkpoint, `finish` with the summary, then `close`."""

    def __init__(
        self,
        info: RunInfo,
        backends: Sequence[str],
        out_dir: Path,
        warn: Callable[[str], None],
    ) -> None:
        self.info, self.out_dir, self.warn = info, Path(out_dir), warn
        self.step = 0  # the highest step seen
        self.closed = False
        self._state_failed = False
        self.saved_state = self._read()  # backend -> its entry, from earlier attempts
        self.live: dict[str, Backend] = {}
        self.last: dict[str, dict[str, int]] = {}  # backend -> metric -> last step logged
        for name in backends:
            self._open(name, self.saved_state.get(name))
        self._write()  # a run id is kept before the first step, so a kill cannot fork the run

    @classmethod
    def for_job(
        cls,
        target: TrackingTarget,
        config: Mapping[str, Any],
        config_hash: str,
        out_dir: Path,
        warn: Callable[[str], None],
    ) -> JobTracker:
        """The tracker of the job `config` (its JSON values) that the worker sent `target` for."""
        info = RunInfo(name=run_name(target.sweep, config, target.job_id), sweep=target.sweep,
                       job_id=target.job_id, config=dict(config), config_hash=config_hash,
                       log_dir=Path(target.log_dir))  # fmt: skip
        return cls(info, target.backends, out_dir, warn)

    # --- the trainer's observer -----------------------------------------------------------

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.step = max(self.step, step)
        for name, backend in list(self.live.items()):
            last = self.last[name]
            fresh = {k: float(v) for k, v in values.items() if step > last.get(k, -1)}
            if fresh and self._call(name, backend.log, step, fresh):
                last.update(dict.fromkeys(fresh, step))

    def saved(self, step: int) -> None:
        """The job checkpointed at `step`: make the backends durable, then record what they
        hold, so a job resumed from this checkpoint skips exactly those steps."""
        for name, backend in list(self.live.items()):
            self._call(name, backend.flush)
        self._write()

    # --- the job's end --------------------------------------------------------------------

    def finish(self, summary: Mapping[str, float]) -> None:
        values = {f"summary/{k}": float(v) for k, v in summary.items()}
        for name, backend in list(self.live.items()):
            self._call(name, backend.summary, self.step, values)

    def close(self, status: Status) -> None:
        """End the runs ("interrupted" and "failed" jobs may resume them later); once."""
        if self.closed:
            return
        self.closed = True
        for name, backend in list(self.live.items()):
            self._call(name, backend.close, status)
        self._write()
        self.live.clear()

    # --- internals ------------------------------------------------------------------------

    def _open(self, name: str, saved: dict[str, Any] | None) -> None:
        try:
            module = importlib.import_module(BACKENDS[name].module)
            backend: Backend = module.open_run(self.info, saved)
        except ImportError as error:
            if error.name == BACKENDS[name].package:  # said once per worker (no job named)
                self.warn(f"{name} logging is off: {install_hint(name)}")
            else:
                self._warn_failed(name, error)
            return
        except Exception as error:  # noqa: BLE001  (a tracking service never fails the job)
            self._warn_failed(name, error)
            return
        self.live[name] = backend
        last = {str(k): int(v) for k, v in ((saved or {}).get("last") or {}).items()}
        known = self._call(name, backend.logged)
        if name not in self.live:
            return
        for key, step in (known if isinstance(known, dict) else {}).items():
            last[key] = max(last.get(key, -1), int(step))
        self.last[name] = last

    def _call(self, name: str, method: Callable[..., Any], *args: Any) -> Any:
        """`method(*args)`, or on an error: warn, close the backend quietly, drop it. Returns
        the method's result; False when it raised."""
        try:
            result = method(*args)
        except Exception as error:  # noqa: BLE001  (a tracking service never fails the job)
            self._drop(name, error)
            return False
        return True if result is None else result

    def _drop(self, name: str, error: BaseException) -> None:
        backend = self.live.pop(name, None)
        self._warn_failed(name, error)
        if backend is not None:
            with contextlib.suppress(Exception):  # already said; nothing more to do
                backend.close("failed")

    def _warn_failed(self, name: str, error: BaseException) -> None:
        text = " ".join(f"{type(error).__name__}: {error}".split())
        if len(text) > _MESSAGE_CHARS:
            text = text[: _MESSAGE_CHARS - 1] + "…"
        self.warn(
            f"job {self.info.job_id}: {name} logging failed ({text}); the job goes on without it"
        )

    def _read(self) -> dict[str, dict[str, Any]]:
        """Earlier attempts' runs, if the file is this job's (a folder reused by a job of
        another config starts afresh, as its checkpoint does)."""
        try:
            data = json.loads((self.out_dir / STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("config_hash") != self.info.config_hash:
            return {}
        backends = data.get("backends")
        if not isinstance(backends, dict):
            return {}
        return {k: v for k, v in backends.items() if isinstance(v, dict)}

    def _write(self) -> None:
        entries = dict(self.saved_state)  # a backend not used this time keeps its run
        for name, backend in list(self.live.items()):
            try:
                state = dict(backend.state())
            except Exception as error:  # noqa: BLE001  (a tracking service never fails the job)
                self._drop(name, error)
                continue
            entries[name] = {**state, "last": dict(self.last.get(name, {}))}
        self.saved_state = entries
        data = {"config_hash": self.info.config_hash, "run": self.info.name, "backends": entries}
        path = self.out_dir / STATE_NAME
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{STATE_NAME}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(partial, path)
        except OSError as error:
            if not self._state_failed:  # the runs go on; only resuming them is at risk
                self._state_failed = True
                self.warn(
                    f"job {self.info.job_id}: cannot record the tracking runs in {path} "
                    f"({error.strerror or error}); a resumed attempt may start new runs"
                )
