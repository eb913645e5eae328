"""MLflow: one run per job in experiment `$MLFLOW_EXPERIMENT_NAME` (default: the sweep's
name), on `$MLFLOW_TRACKING_URI` (a server or database), else a file store in
`<log dir>/mlruns`, which needs no server (`MLFLOW_ALLOW_FILE_STORE=true mlflow ui
--backend-store-uri <log dir>/mlruns`; MLflow 3 asks for that opt-in, set here by default).

The job's config is the run's params (flat: `variant_params.KEY`), and tags name the sweep, job
and config hash. Through `MlflowClient`, not the fluent API, since a pack logs several runs at
once from one process. A resumed job reopens its run by id and asks the store for the last step
of each metric it holds, so steps that a hard kill left unrecorded are not logged twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lorabench.tracking.base import RunInfo, Status, flat_params

FOLDER = "mlruns"
_BATCH = 100  # params per log_batch call (MLflow's limit)
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MlflowRun:
    def __init__(self, info: RunInfo, saved: dict[str, Any] | None) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow 3 keeps its file store "in maintenance mode" and wants this opt-in; it is
            # the one store that needs no server, database or extra package, and that workers
            # on one machine may share (each run is a folder of its own).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (Path(info.log_dir) / FOLDER).resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = self._reopen((saved or {}).get("run_id")) or self._create(info)

    def _reopen(self, run_id: object) -> str | None:
        """The earlier attempt's run, running again; None if this store does not hold it."""
        from mlflow.exceptions import MlflowException

        if not isinstance(run_id, str):
            return None
        try:
            self.client.get_run(run_id)
        except MlflowException:
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _create(self, info: RunInfo) -> str:
        from mlflow.entities import Param

        experiment = self._experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or info.sweep)
        tags = {"lorabench.sweep": info.sweep, "lorabench.job_id": str(info.job_id),
                "lorabench.config_hash": info.config_hash}  # fmt: skip
        run = self.client.create_run(experiment, run_name=info.name, tags=tags)
        params = [Param(k, str(v)) for k, v in flat_params(info.config).items()]
        for start in range(0, len(params), _BATCH):
            self.client.log_batch(run.info.run_id, params=params[start : start + _BATCH])
        return run.info.run_id

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another worker created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def logged(self) -> dict[str, int]:
        keys = self.client.get_run(self.run_id).data.metrics
        return {key: max((m.step for m in self.client.get_metric_history(self.run_id, key)),
                         default=-1) for key in keys}  # fmt: skip

    def log(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def summary(self, step: int, values: Mapping[str, float]) -> None:
        self.log(step, values)

    def flush(self) -> None:
        pass  # every call above has been written when it returns

    def close(self, status: Status) -> None:
        self.client.set_terminated(self.run_id, status=_STATUS[status])

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


def open_run(info: RunInfo, saved: dict[str, Any] | None) -> MlflowRun:
    return MlflowRun(info, saved)
