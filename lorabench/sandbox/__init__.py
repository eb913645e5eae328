"""Run untrusted Python (model-generated code) in a separate, isolated interpreter.

This is the only place lorabench executes generated code. Two modes (docs/SANDBOX.md says
exactly what each guarantees):

- "strong" (the default): the operating system isolates each program with bubblewrap
  (`_bwrap.py`): fresh user, mount, pid, network, ipc, uts and cgroup namespaces; uid/gid
  65534 with no capabilities and no way to make another user namespace; a root file system
  holding only read-only `/usr`, the Python installation (its site-packages hidden) and the
  allowed packages; its own `/proc`; a size-capped private tmpfs as working directory; a
  seccomp filter against new processes, namespaces, mounts, ptrace and keyrings. Where
  bubblewrap cannot run, `run_program` refuses with `SandboxUnavailable`.
- "weak" (explicit opt-in only): the in-process layers of earlier versions, best effort: a
  network namespace, uid nobody when root, rlimits and the audit hook. Not a boundary.

In both: a wall clock (the parent kills everything at `timeout_s`), rlimits (address space,
CPU, file size, open files, no core files), stdout/stderr read up to `output_bytes`, an empty
environment, and the audit hook as a second layer (`audit_hook=False` leaves it out).

A program passes only when the harness's end marker arrives and its exit status is 0: the
marker is a per-run random nonce that the harness writes to a pipe of its own after the last
line of the program ran (see `_child.py`), so exiting early by any route, `os._exit(0)`,
`sys.exit(0)`, a signal, is a failure.

Modules: `runner` starts a program and waits for it, `collect` reads its output and the
harness's channels, `verdict` judges how it ended, `processes` finds and kills what is left,
`limits` and `results` hold the types, `_bwrap` builds the bubblewrap command line and
`_child` is the harness run inside (a standalone script: it imports only the stdlib). The
package imports nothing else from lorabench and no torch.
"""

from lorabench.sandbox.limits import Isolation, SandboxLimits
from lorabench.sandbox.processes import (
    leftover_processes,
    namespace_processes,
    session_processes,
)
from lorabench.sandbox.results import (
    Outcome,
    SandboxError,
    SandboxResult,
    SandboxUnavailable,
)
from lorabench.sandbox.runner import (
    STRONG_LAYERS,
    run_program,
    run_programs,
    strong_sandbox_problem,
    unavailable_message,
)

__all__ = [
    "STRONG_LAYERS",
    "Isolation",
    "Outcome",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "leftover_processes",
    "namespace_processes",
    "session_processes",
    "run_program",
    "run_programs",
    "strong_sandbox_problem",
    "unavailable_message",
]
