"""A worker's processes die with it, and a worker can tell whether another one is alive.

- The fork server and every trainer ask Linux to SIGKILL them when their parent dies
  (`PR_SET_PDEATHSIG`): a `kill -9`'d worker takes its fork server with it, and the fork
  server's death takes the trainer. The fork server arms itself while importing this module,
  first in its preload list and before torch, so even a worker killed during the preload leaves
  nothing behind; this module therefore imports only the standard library.
- A worker row records `process_identity()` (boot, pid namespace, start time), and
  `holder_state` proves a worker on this machine dead when its pid is gone, a zombie, or now
  belongs to a process started at another time (pid reuse). Elsewhere it cannot tell: "unknown".

Everything here is best effort and Linux only; without /proc or prctl nothing is armed and no
worker is ever declared dead, so the lease alone decides, as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from typing import Literal

# Set by the worker for its fork server: the pid of the worker the fork server serves.
WORKER_PID_ENV = "LORABENCH_WORKER_PID"
_PR_SET_PDEATHSIG = 1

# In a fork server that armed itself, its own pid; its children (trainers) inherit the value.
fork_server_pid: int | None = None

HolderState = Literal["alive", "dead", "unknown"]


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> bool:
    """Ask Linux to send `sig` (SIGKILL) to this process when the thread that forked it ends.
    Check the parent afterwards: if it died before this call, the request never fires."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of `pid` from /proc; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0].decode(), int(fields[19])  # fields 3 (state) and 22 (starttime)
    except (OSError, ValueError, IndexError):
        return None


def _machine() -> str | None:
    """This boot of this machine and the pid namespace we see: pids compare only within it."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot} {namespace}" if boot and " " not in namespace else None


def process_identity(pid: int | None = None) -> str | None:
    """'<boot id> <pid namespace> <start ticks>' of process `pid` (default: this one); None
    where /proc does not tell (not Linux): a worker without one is never declared dead by
    another, only by its lease running out."""
    machine, stat = _machine(), _stat(os.getpid() if pid is None else pid)
    return None if machine is None or stat is None else f"{machine} {stat[1]}"


def _gone(pid: int, start_ticks: int | None) -> bool | None:
    """True if `pid` is not running (no such process, a zombie, or another process than the one
    started at `start_ticks`), False if it runs, None if this process cannot tell."""
    if pid <= 0 or not sys.platform.startswith("linux"):
        return None  # (os.kill on Windows would terminate the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists; /proc says whether it is the same one
    except OSError:
        return None
    stat = _stat(pid)
    if stat is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # it ended between the two looks
        except OSError:
            pass
        return None  # /proc hides it (hidepid): it may be the worker
    state, started = stat
    if start_ticks is not None and started != start_ticks:
        return True  # the pid was reused
    return state in ("Z", "X")


def holder_state(host: str, pid: int, identity: str | None) -> HolderState:
    """Whether the worker process a worker row describes still runs. "dead" is a proof (same
    machine, boot and pid namespace, and its process is gone); "alive" means it runs;
    "unknown" everywhere else (another machine, no identity recorded, /proc unreadable)."""
    mine = _machine()
    if not identity or mine is None or host != socket.gethostname():
        return "unknown"
    machine, _, ticks = identity.rpartition(" ")
    if machine != mine or not ticks.isdigit():
        return "unknown"
    gone = _gone(pid, int(ticks))
    if gone is None:
        return "unknown"
    return "dead" if gone else "alive"


def worker_marker() -> dict[str, str]:
    """The environment a worker gives its fork server: the fork server arms itself from it."""
    return {WORKER_PID_ENV: str(os.getpid())}


def _in_fork_server_preload() -> bool:
    """Whether multiprocessing's fork server is importing us (its `main` is on the stack)."""
    frame = sys._getframe(1)
    while frame is not None:
        if (
            frame.f_code.co_name == "main"
            and frame.f_globals.get("__name__") == "multiprocessing.forkserver"
        ):
            return True
        frame = frame.f_back
    return False


def _arm_fork_server() -> None:
    """In a worker's fork server: die with the worker. Anywhere else: nothing."""
    global fork_server_pid
    worker = os.environ.get(WORKER_PID_ENV, "")
    if not worker.isdigit() or int(worker) == os.getpid() or not _in_fork_server_preload():
        return
    worker_pid = int(worker)
    if os.getppid() == worker_pid:
        die_with_parent()
        if os.getppid() == worker_pid:  # still our parent after the request: it will fire
            fork_server_pid = os.getpid()
            return
    # The worker that started us died before the request reached the kernel: leave now rather
    # than finish a preload of torch for nobody.
    if _gone(worker_pid, None) is not False:
        os._exit(0)


_arm_fork_server()
