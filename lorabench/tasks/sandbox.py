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
line of the program ran (see `_sandbox_child`), so exiting early by any route, `os._exit(0)`,
`sys.exit(0)`, a signal, is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from lorabench.tasks import _bwrap
from lorabench.tasks import _sandbox_child as child

log = logging.getLogger(__name__)

_PROGRAM = "main.py"
_CHUNK = 65536
Isolation = Literal["strong", "weak"]
STRONG_LAYERS = (
    *("bubblewrap", "user-namespace", "mount-namespace", "pid-namespace"),
    *("network-namespace", "ipc-namespace", "uts-namespace", "no-capabilities"),
)


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


def strong_sandbox_problem() -> str | None:
    """Why the strong sandbox cannot run here, or None when it can (probed once)."""
    return _bwrap.unavailable_reason()


def unavailable_message(reason: str) -> str:
    return (
        f"{reason}. Generated code runs only under bubblewrap; install it, or accept the weak "
        'in-process sandbox explicitly with task_params sandbox = "weak" (docs/SANDBOX.md)'
    )


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one Python program in the sandbox and report how it ended."""
    limits = limits or SandboxLimits()
    if limits.isolation == "strong":
        reason = strong_sandbox_problem()
        if reason is not None:
            raise SandboxUnavailable(unavailable_message(reason))
        return _run_strong(source, limits)
    return _run_weak(source, limits)


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


def _program_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # Native libraries (OpenBLAS in numpy) would start thread pools the limits forbid.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }


def _harness_config(limits: SandboxLimits, mode: str, workdir: str, fds: dict) -> dict:
    return {
        "mode": mode,
        "workdir": workdir,
        "program": _PROGRAM,
        "report_fd": fds["report"],
        "nonce_fd": fds["nonce"],
        "marker_fd": fds["marker"],
        "audit_hook": limits.audit_hook,
        "memory_bytes": limits.memory_bytes,
        "cpu_time_s": limits.cpu_seconds,
        "file_size_bytes": limits.file_size_bytes,
        "open_files": limits.open_files,
    }


class _Pipes:
    """The parent's ends of the harness's private channels, and the child's ends to pass on."""

    def __init__(self, nonce: bytes, extra: Sequence[str] = ()) -> None:
        self.read: dict[str, int] = {}
        self.child: dict[str, int] = {}
        for name in ("report", "marker", *extra):
            self.read[name], self.child[name] = os.pipe()
        self.child["nonce"], nonce_write = os.pipe()
        os.write(nonce_write, nonce)  # 32 bytes: well under a pipe's buffer
        os.close(nonce_write)

    def close_child_ends(self) -> None:
        for fd in self.child.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child = {}

    def close(self) -> None:
        self.close_child_ends()
        for fd in self.read.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run_strong(source: str, limits: SandboxLimits) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    pipes = _Pipes(nonce, extra=("info",))
    fds = {"program": _memfd("program", source.encode("utf-8"))}
    seccomp = _bwrap.seccomp_filter()
    if seccomp is not None:
        fds["seccomp"] = _memfd("seccomp", seccomp)
    try:
        config = _harness_config(limits, "strong", _bwrap.WORKDIR, pipes.child)
        packages = _bwrap.package_dirs(limits.packages)
        config["packages"] = _bwrap.PACKAGES if packages else None
        command = _bwrap.command(
            harness=child.__file__,
            argv=[json.dumps(config)],
            packages=packages,
            disk_bytes=limits.disk_bytes,
            fds={**fds, "info": pipes.child["info"]},
            env=_program_env(_bwrap.WORKDIR),
        )
        layers = (*STRONG_LAYERS, *(("seccomp",) if seccomp is not None else ()))
        # bwrap's own environment is empty too: its pid 1 is visible in the program's /proc.
        return _execute(command, None, {}, pipes, [*fds.values()], nonce, limits, layers)
    finally:
        for fd in fds.values():
            os.close(fd)


def _run_weak(source: str, limits: SandboxLimits) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    workdir = Path(tempfile.mkdtemp(prefix="lorabench-sandbox-")).resolve()
    pipes = _Pipes(nonce)
    try:
        (workdir / _PROGRAM).write_text(source, encoding="utf-8")
        (workdir / _PROGRAM).chmod(0o644)
        if os.geteuid() == 0:
            os.chown(workdir, child.NOBODY, child.NOBODY)
        config = _harness_config(limits, "weak", str(workdir), pipes.child)
        packages = _bwrap.package_dirs(limits.packages)
        config.update(
            network=True, drop_privileges=True, keep_read_search=_needs_read_search(),
            packages=_weak_packages(workdir, packages), read_roots=sorted(packages.values()),
        )  # fmt: skip
        command = [_bwrap.interpreter(), "-I", "-S", "-B", child.__file__, json.dumps(config)]
        env = _program_env(str(workdir))
        return _execute(command, workdir, env, pipes, [], nonce, limits, ())
    finally:
        _remove_tree(workdir)


def _weak_packages(workdir: Path, packages: dict[str, str]) -> str | None:
    """A folder of links to the allowed packages, on the weak sandbox's import path."""
    if not packages:
        return None
    folder = workdir / ".packages"
    folder.mkdir()
    for name, path in packages.items():
        (folder / name).symlink_to(path)
    return str(folder)


def _execute(
    command: list[str],
    cwd: Path | None,
    env: dict[str, str],
    pipes: _Pipes,
    extra_fds: list[int],
    nonce: bytes,
    limits: SandboxLimits,
    os_layers: tuple[str, ...],
) -> SandboxResult:
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            pass_fds=(*pipes.child.values(), *extra_fds),
        )
    except OSError as error:
        pipes.close()
        raise SandboxError(f"cannot start {command[0]}: {error}") from error
    pipes.close_child_ends()
    namespace = None
    try:
        collected = _collect(process, pipes.read, start + limits.timeout_s, limits.output_bytes)
        namespace = _pid_namespace(collected.out.get("info", b""))
        _wait_unreaped(process.pid, start + limits.timeout_s, collected)
    finally:
        _kill_session(process.pid, namespace)
        process.wait()
        pipes.close()
    duration = time.monotonic() - start
    return _result(process, collected, duration, limits, nonce, os_layers, namespace)


def _pid_namespace(info: bytes) -> int | None:
    try:
        return int(json.loads(info.decode())["pid-namespace"])
    except (ValueError, KeyError, TypeError):
        return None


@functools.cache
def _needs_read_search() -> bool:
    """Whether uid nobody needs CAP_DAC_READ_SEARCH to reach this Python installation."""
    import sysconfig

    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = [_bwrap.interpreter(), *(sysconfig.get_paths()[n] for n in names)]
    return not _reachable_by_others(paths)


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
    def __init__(self, channels: Sequence[str]) -> None:
        self.out = {name: bytearray() for name in ("stdout", "stderr", *channels)}
        self.truncated = False
        self.timed_out = False


def _collect(process, channels: dict[str, int], deadline: float, budget: int) -> _Collected:
    """Read the program's output and the harness's channels until EOF, deadline or budget.

    Every byte counts against the budget, the private channels too: a program that finds
    one of them cannot make the parent buffer without limit.
    """
    collected = _Collected(list(channels))
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    for name, fd in channels.items():
        selector.register(fd, selectors.EVENT_READ, name)
    used = 0
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                collected.timed_out = True
                return collected
            for key, _ in selector.select(timeout=remaining):
                data = os.read(key.fd, min(_CHUNK, budget - used + 1))
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                collected.out[key.data] += data
                used += len(data)
                if used > budget:
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


def _scan_proc(matches: Callable[[Path, list[str]], bool]) -> list[int]:
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
    return _scan_proc(lambda _, fields: int(fields[3]) == sid)


def namespace_processes(pid_namespace: int) -> list[int]:
    """Pids (as seen here) of live processes in the pid namespace with that inode."""
    link = f"pid:[{pid_namespace}]"
    return _scan_proc(lambda entry, _: os.readlink(entry / "ns" / "pid") == link)


def leftover_processes(result: SandboxResult) -> list[int]:
    """Processes of a finished run still alive (always empty, unless a layer failed)."""
    left = set(session_processes(result.pid))
    if result.pid_namespace is not None:
        left |= set(namespace_processes(result.pid_namespace))
    return sorted(left)


def _kill_session(pid: int, pid_namespace: int | None, grace_s: float = 2.0) -> None:
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


def _exit_status(code: int | None, strong: bool) -> int | None:
    """bwrap reports a child killed by signal N as exit status 128 + N: make it -N again."""
    if strong and code is not None and 128 < code < 128 + signal.NSIG:
        with contextlib.suppress(ValueError):
            return -signal.Signals(code - 128).value
    return code


def _result(
    process: subprocess.Popen,
    collected: _Collected,
    duration: float,
    limits: SandboxLimits,
    nonce: bytes,
    os_layers: tuple[str, ...],
    namespace: int | None,
) -> SandboxResult:
    code = _exit_status(process.returncode, bool(os_layers))
    report = _parse_report(collected.out["report"])
    stdout = collected.out["stdout"].decode("utf-8", errors="replace")
    stderr = collected.out["stderr"].decode("utf-8", errors="replace")
    if report is None and not (collected.timed_out or collected.truncated):
        raise SandboxError(f"sandbox setup failed (exit code {code}): {stderr.strip()[-2000:]}")
    finished = bytes(collected.out["marker"]) == nonce
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
    elif code == 0 and finished:
        outcome, reason = Outcome.PASSED, ""
    elif code == 0:
        outcome, reason = Outcome.FAILED, "exited before its end (no end marker from the harness)"
    else:
        outcome, reason = Outcome.FAILED, _last_line(stderr) or f"exit code {code}"
    layers = (*os_layers, *(report["layers"] if report else ()))
    if not os_layers:
        _warn_missing(layers)
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
        pid_namespace=namespace,
        finished=finished,
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


def _warn_missing(layers: tuple[str, ...]) -> None:
    missing = []
    if "network-namespace" not in layers:
        missing.append("network namespace (only the audit hook blocks sockets)")
    if os.geteuid() == 0 and "dedicated-uid" not in layers:
        missing.append("uid switch (only the audit hook guards files)")
    if missing:
        _warn_once("; ".join(missing))


@functools.cache
def _warn_once(missing: str) -> None:
    # Once per process and kind of gap, not once per program (HumanEval runs hundreds).
    log.warning("weak sandbox runs without: %s", missing)


def _remove_tree(path: Path) -> None:
    def make_writable(function, failed, _exc_info) -> None:
        # A program may leave directories without write or search permission.
        os.chmod(os.path.dirname(failed) or ".", 0o700)
        os.chmod(failed, 0o700)
        function(failed)

    shutil.rmtree(path, onerror=make_writable)
