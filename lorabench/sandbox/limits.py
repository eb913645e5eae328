"""What one sandboxed program may use, and which isolation runs it (`SandboxLimits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Isolation = Literal["strong", "weak"]


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. Defaults suit unit-test programs such as HumanEval's."""

    timeout_s: float = 10.0  # wall clock, from start to exit
    cpu_time_s: int | None = None  # RLIMIT_CPU; None: the timeout rounded up
    memory_bytes: int = 1 << 30  # RLIMIT_AS (address space, not resident memory)
    output_bytes: int = 1 << 20  # stdout + stderr together; more kills the program
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE, per file written
    disk_bytes: int = 64 << 20  # strong mode: size of the private working dir and /dev/shm
    open_files: int = 64  # RLIMIT_NOFILE
    isolation: Isolation = "strong"  # "weak" only by explicit choice: see docs/SANDBOX.md
    audit_hook: bool = True  # the in-process second layer
    packages: tuple[str, ...] = field(default=("numpy",))  # importable beyond the stdlib

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_bytes", "output_bytes", "file_size_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"SandboxLimits.{name} must be positive, got {getattr(self, name)}"
                )
        if self.cpu_time_s is not None and self.cpu_time_s < 1:
            raise ValueError(f"SandboxLimits.cpu_time_s must be >= 1, got {self.cpu_time_s}")
        if self.open_files < 16:
            raise ValueError(f"SandboxLimits.open_files must be >= 16, got {self.open_files}")
        if self.disk_bytes < 1 << 20:
            raise ValueError(f"SandboxLimits.disk_bytes must be >= 1 MiB, got {self.disk_bytes}")
        if self.isolation not in ("strong", "weak"):
            raise ValueError(f"SandboxLimits.isolation must be strong or weak: {self.isolation!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_time_s if self.cpu_time_s is not None else math.ceil(self.timeout_s)
