"""Hyperparameter checks shared by the gradient-driven initialisations (LoRA-GA, LoRA-One)."""

from __future__ import annotations

import math


def check_prepare_params(steps: int, gamma: float) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma}")
