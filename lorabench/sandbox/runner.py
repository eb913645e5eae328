"""Starting one sandboxed program, strong (under bubblewrap) or weak, and waiting for it."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lorabench.sandbox import _bwrap
from lorabench.sandbox import _child as child
from lorabench.sandbox.collect import collect, pid_namespace, wait_unreaped
from lorabench.sandbox.limits import SandboxLimits
from lorabench.sandbox.processes import kill_session
from lorabench.sandbox.results import SandboxError, SandboxResult, SandboxUnavailable
from lorabench.sandbox.verdict import judge

_PROGRAM = "main.py"


STRONG_LAYERS = (
    *("bubblewrap", "user-namespace", "mount-namespace", "pid-namespace"),
    *("network-namespace", "ipc-namespace", "uts-namespace", "no-capabilities"),
)


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
        collected = collect(process, pipes.read, start + limits.timeout_s, limits.output_bytes)
        namespace = pid_namespace(collected.out.get("info", b""))
        wait_unreaped(process.pid, start + limits.timeout_s, collected)
    finally:
        kill_session(process.pid, namespace)
        process.wait()
        pipes.close()
    duration = time.monotonic() - start
    return judge(process, collected, duration, limits, nonce, os_layers, namespace)


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


def _remove_tree(path: Path) -> None:
    def make_writable(function, failed, _exc_info) -> None:
        # A program may leave directories without write or search permission.
        os.chmod(os.path.dirname(failed) or ".", 0o700)
        os.chmod(failed, 0o700)
        function(failed)

    shutil.rmtree(path, onerror=make_writable)
