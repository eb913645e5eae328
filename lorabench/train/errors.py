"""How a training run can end early; the worker maps each to a job state (defined in errors)."""

from lorabench.errors import DeterministicFailure, Interrupted, NonFiniteLoss

__all__ = ["DeterministicFailure", "Interrupted", "NonFiniteLoss"]
