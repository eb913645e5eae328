"""lorabench: fair, resumable benchmarking of LoRA variants (see README.md).

The Python API (`lorabench.api`) is reachable from here, imported on first use so that
`import lorabench` (and every command) stays light:

    import lorabench
    lorabench.plan(...); lorabench.run_worker(...)
    lorabench.load_results(...); lorabench.write_report(...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorabench.api import (  # noqa: F401
        Planned,
        WorkerRun,
        load_results,
        plan,
        run_worker,
        write_report,
    )

__version__ = "0.1.0"

_API = ("Planned", "WorkerRun", "load_results", "plan", "run_worker", "write_report")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("lorabench.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
