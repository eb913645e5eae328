"""What every tracking backend shares: the names, the run's identity, the `Backend` protocol.

Standard library only (floor 0): the config validates backend names against `BACKENDS`, and
the worker checks which libraries are installed (`missing_backends`) without importing them.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from lorabench.suggest import unknown_name


@dataclass(frozen=True)
class BackendInfo:
    module: str  # the lorabench module that implements it
    package: str  # the import name of the library it needs
    extra: str  # pip install 'lorabench[EXTRA]'


BACKENDS: dict[str, BackendInfo] = {
    "tensorboard": BackendInfo("lorabench.tracking.tensorboard", "tensorboard", "tensorboard"),
    "wandb": BackendInfo("lorabench.tracking.wandb", "wandb", "wandb"),
    "mlflow": BackendInfo("lorabench.tracking.mlflow", "mlflow", "mlflow"),
}
NONE = "none"  # `work --log none`: no tracking on this worker, whatever the sweep asks

# How a run ended: a resumed job reopens an "interrupted" (or "failed", then requeued) run.
Status = Literal["finished", "failed", "interrupted"]


def parse_backends(values: Iterable[str]) -> tuple[str, ...]:
    """Backend names from flags or a sweep file ("tensorboard", "wandb,mlflow", "none"), in
    order, each once; an unknown name raises ValueError with the closest known one."""
    names: list[str] = []
    for value in values:
        for part in str(value).split(","):
            name = part.strip().lower()
            if not name or name == NONE:
                continue
            if name not in BACKENDS:
                raise ValueError(unknown_name("tracking backend", name, [*BACKENDS, NONE]))
            if name not in names:
                names.append(name)
    return tuple(names)


def missing_backends(names: Iterable[str]) -> list[str]:
    """The backends among `names` whose library is not installed (found without importing)."""
    return [n for n in names if not _installed(BACKENDS[n].package)]


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


def install_hint(name: str) -> str:
    info = BACKENDS[name]
    return f"{info.package} is not installed (pip install 'lorabench[{info.extra}]')"


@dataclass(frozen=True)
class TrackingTarget:
    """Where and under what name one job is logged: what the worker hands its training child.
    `log_dir` holds TensorBoard's event files, W&B's run folders and the MLflow file store,
    unless WANDB_DIR or MLFLOW_TRACKING_URI name others."""

    backends: tuple[str, ...]
    log_dir: str
    sweep: str
    job_id: int


def run_name(sweep: str, config: Mapping[str, Any], job_id: int) -> str:
    """ "lr/lora/lr=0.0001/seed=0/job-12": sweep, variant, learning rate and seed say what the
    run is; the job id makes it unique (jobs may differ in other fields too)."""
    return f"{sweep}/{config['variant']}/lr={config['lr']:g}/seed={config['seed']}/job-{job_id}"


def flat_params(config: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The job's config as flat run parameters: tables become `variant_params.KEY`, lists and
    None their JSON text (what TensorBoard's HParams and MLflow's params accept)."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in sorted(config.items()):
        if isinstance(value, Mapping):
            for inner, item in sorted(value.items()):
                flat[f"{key}.{inner}"] = _scalar(item)
        else:
            flat[key] = _scalar(value)
    return flat


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class RunInfo:
    """One job's run, as every backend opens it."""

    name: str  # `run_name`
    sweep: str
    job_id: int
    config: dict[str, Any]  # the job's full config (JSON values)
    config_hash: str
    log_dir: Path


class Backend(Protocol):
    """One job's run on one tracking service. Opened by its module's `open_run(info, saved)`,
    where `saved` is what `state()` returned in an earlier attempt of the job plus `"last"`, the
    last step of each metric that attempt recorded as logged (None: the job's first attempt), so
    a resumed job continues the same run. Any method may raise: the `JobTracker` warns once and
    stops using the backend."""

    def logged(self) -> dict[str, int]:
        """The last step of each metric the service already holds for this run, where it can
        tell (a resumed run); the tracker skips those steps."""
        ...

    def log(self, step: int, values: Mapping[str, float]) -> None: ...

    def summary(self, step: int, values: Mapping[str, float]) -> None:
        """The job's final numbers (best score, steps, times), once, at its last step."""
        ...

    def flush(self) -> None:
        """Make what was logged durable (called at every checkpoint, before the tracker records
        which steps are logged)."""
        ...

    def close(self, status: Status) -> None: ...

    def state(self) -> dict[str, Any]:
        """What a later attempt needs to continue this run (its id), as JSON values."""
        ...
