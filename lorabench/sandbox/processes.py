"""Finding and killing what a sandboxed run left running, from /proc."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from lorabench.sandbox.results import SandboxResult

log = logging.getLogger("lorabench.sandbox")


def scan_proc(matches: Callable[[Path, list[str]], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, session, ...
        fields = line[line.rfind(")") + 2 :].split()
        with contextlib.suppress(OSError, ValueError, IndexError):
            if fields[0] != "Z" and matches(entry, fields):
                found.append(int(entry.name))
    return found


def session_processes(sid: int) -> list[int]:
    """Pids of live processes in session `sid`, from /proc (empty where /proc is missing)."""
    return scan_proc(lambda _, fields: int(fields[3]) == sid)


def namespace_processes(pid_namespace: int) -> list[int]:
    """Pids (as seen here) of live processes in the pid namespace with that inode."""
    link = f"pid:[{pid_namespace}]"
    return scan_proc(lambda entry, _: os.readlink(entry / "ns" / "pid") == link)


def leftover_processes(result: SandboxResult) -> list[int]:
    """Processes of a finished run still alive (always empty, unless a layer failed)."""
    left = set(session_processes(result.pid))
    if result.pid_namespace is not None:
        left |= set(namespace_processes(result.pid_namespace))
    return sorted(left)


def kill_session(pid: int, pid_namespace: int | None, grace_s: float = 2.0) -> None:
    """SIGKILL the process group, the rest of its session and the program's pid namespace.

    The program runs in a session of its own inside bubblewrap's pid namespace; killing the
    namespace's first process ends every process in it. Wait (briefly) until none is left, so
    callers can rely on nothing running after a result.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while True:
        left = session_processes(pid)
        if pid_namespace is not None:
            left += namespace_processes(pid_namespace)
        if not left or time.monotonic() > deadline:
            break
        for other in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(other, signal.SIGKILL)
        time.sleep(0.01)
    if left:
        log.warning("sandbox: processes %s survived SIGKILL", left)
