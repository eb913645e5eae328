"""How a sandboxed program ended (`SandboxResult`), and the sandbox's own errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a failure of the program)."""


class SandboxUnavailable(SandboxError):
    """Strong isolation was asked for and this machine cannot provide it."""


class Outcome(StrEnum):
    PASSED = "passed"  # the end marker arrived and the exit status was 0
    FAILED = "failed"  # exception, failed assertion, refused action, early exit
    TIMED_OUT = "timed_out"  # wall-clock or CPU-time limit
    KILLED = "killed"  # output over the limit, or a signal (e.g. SIGSEGV, the OOM killer)


@dataclass(frozen=True)
class SandboxResult:
    outcome: Outcome
    exit_code: int | None  # negative: killed by that signal; None: never started
    stdout: str
    stderr: str
    truncated: bool  # output went over `output_bytes` and was cut there
    duration_s: float
    reason: str  # one line on why it did not pass; "" when it passed
    pid: int  # the process started here: its process group and session id
    isolation: tuple[str, ...]  # layers in force, see the module docstring
    pid_namespace: int | None = None  # strong mode: inode of the program's pid namespace
    finished: bool = False  # the harness's end marker arrived

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED
