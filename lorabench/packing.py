"""Which jobs may share one model pass: the one rule the queue and the packed trainer both use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PACKABLE_FIELDS = ("lr",)  # what may differ between the jobs of one pack


def pack_key(config: Mapping[str, Any]) -> str:
    """Jobs whose stored configs (the canonical JSON, parsed) give equal keys may be packed:
    they differ at most in PACKABLE_FIELDS."""
    rest = {k: v for k, v in config.items() if k not in PACKABLE_FIELDS}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))
