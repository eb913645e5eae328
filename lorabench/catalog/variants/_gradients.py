"""Shared by the gradient-driven initialisations (LoRA-GA, LoRA-One): hyperparameter checks
and the size of what their `prepare` holds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lorabench.catalog.cost import SiteShape


def check_prepare_params(steps: int, gamma: float) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma}")


def weight_gradient_sums(sites: Sequence[SiteShape], rank: int, params: Any = None) -> int:
    """What their `prepare` holds: one fp32 running sum of d loss / d W per wrapped layer,
    all at once (`variants._gradients.estimate_weight_gradients`)."""
    return sum(s.in_features * s.out_features for s in sites)
