"""Experiment tracking: each job as one run in TensorBoard, Weights & Biases and/or MLflow.

Optional and offline-safe. Nothing here imports a tracking library until a job is logged (the
backend modules import theirs inside functions), so `plan`, `status` and the other fast commands
never pay for them, and a missing library is a warning, never a failed job.

- `TrackingTarget`: what the worker tells its training child per job (backends, folder, sweep,
  job id); plain and picklable.
- `JobTracker` (`job.py`): the trainer's observer for one job in the child. It fans each step's
  values out to the backends, skips steps an earlier attempt logged already (a resumed job
  continues its run), keeps what a later attempt needs in `<job folder>/tracking.json`, and
  turns any backend error into one warning, after which the job goes on without that backend.
- One module per backend behind `base.Backend`: `tensorboard.py`, `wandb.py`, `mlflow.py`.
"""

from __future__ import annotations

from lorabench.tracking.base import (
    BACKENDS,
    Backend,
    RunInfo,
    TrackingTarget,
    flat_params,
    install_hint,
    missing_backends,
    parse_backends,
    run_name,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "RunInfo",
    "TrackingTarget",
    "flat_params",
    "install_hint",
    "missing_backends",
    "parse_backends",
    "run_name",
]
