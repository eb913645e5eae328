"""`noop`: a 4x4 linear model on random points, the worker path in milliseconds; its params
slow it down or inject faults (implemented in `lorabench.tasks.noop`)."""

from typing import Literal

from pydantic import Field

from lorabench.catalog.task import TaskDefaults, TaskInfo, TaskParams

NOOP_MODEL = "noop-linear-4x4"


class NoopParams(TaskParams):
    sleep_s: float = Field(0.0, ge=0.0, le=3600.0)
    fault: Literal["none", "nan", "oom", "disk-full", "error", "crash"] = "none"
    fault_step: int = Field(1, ge=1)


NOOP = TaskInfo(
    name="noop",
    family="test",
    primary_metric="score",
    metrics=("score",),
    defaults=TaskDefaults(
        model=NOOP_MODEL,
        targets=("proj",),
        max_length=1,
        batch_size=8,
        epochs=1,
        schedule="linear",
        train_size=8,
        eval_size=4,
    ),
    needs_download=False,
    summary="a 4x4 linear model on random points: the worker path in milliseconds (tests, "
    "scale checks; task_params inject faults)",
    implementation="lorabench.tasks.noop",
    params_cls=NoopParams,
)

TASKS = (NOOP,)
