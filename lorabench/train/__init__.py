"""Training one job: the loop, checkpoints and the errors that end it early."""

from lorabench.train.errors import DeterministicFailure, Interrupted, NonFiniteLoss
from lorabench.train.loop import Schedule, TrainResult, train_job

__all__ = [
    "DeterministicFailure",
    "Interrupted",
    "NonFiniteLoss",
    "Schedule",
    "TrainResult",
    "train_job",
]
