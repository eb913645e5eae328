"""The operating-system layer of the code sandbox: a bubblewrap (`bwrap`) command line.

Each program gets fresh namespaces (mount, pid, network, ipc, uts, cgroup, and a user
namespace in which it is uid/gid 65534 with no capabilities and may not create another), a
root file system that holds only what is bound here (read-only `/usr`, the Python
installation with its site-packages hidden, the allowed packages, the harness), its own
`/proc`, a minimal `/dev`, and a size-capped private tmpfs as its working directory. A
seccomp filter refuses new processes (threads are allowed), namespace, mount, ptrace and
kernel-keyring calls. See docs/SANDBOX.md for what each part guarantees.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

WORKDIR = "/sandbox/work"
HARNESS = "/sandbox/harness.py"
PACKAGES = "/sandbox/packages"
SANDBOX_UID = 65534
MERGED_ROOT_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

# <linux/audit.h>, <linux/seccomp.h>, <linux/filter.h>, <linux/sched.h>
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_EPERM = 1
_ENOSYS = 38
_CLONE_THREAD = 0x00010000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JSET_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x45, 0x35, 0x06

# Syscalls refused with EPERM, per architecture: new processes (clone is checked apart:
# with CLONE_THREAD it makes a thread and is allowed), namespaces, mounts, tracing, keys.
_DENIED = {
    "x86_64": {
        "fork": 57, "vfork": 58, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "mknod": 133, "mknodat": 259, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "kexec_load": 246, "init_module": 175,
        "finit_module": 313,
    },
    "aarch64": {
        "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
        "chroot": 51, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "mknodat": 33, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "kexec_load": 104, "init_module": 105, "finit_module": 273,
    },
}  # fmt: skip
_ARCH = {"x86_64": (0xC000003E, 56), "aarch64": (0xC00000B7, 220)}  # audit arch, clone
_CLONE3 = 435  # same number on both; refused with ENOSYS so libc falls back to clone


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A classic-BPF seccomp program (struct sock_filter[]) for this machine, or None."""
    machine = machine or platform.machine()
    if machine not in _DENIED:
        return None
    audit_arch, clone = _ARCH[machine]
    denied = sorted(_DENIED[machine].values())
    program = [
        # seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (args[0] low word at 16).
        _instruction(_BPF_LD_W_ABS, 4),
        _instruction(_BPF_JEQ_K, audit_arch, jt=1),
        _instruction(_BPF_RET_K, _SECCOMP_RET_KILL_PROCESS),  # another ABI (i386, x32 ...)
        _instruction(_BPF_LD_W_ABS, 0),
        _instruction(_BPF_JGE_K, 0x40000000, jt=0, jf=1),  # x32 numbers on x86_64
        _instruction(_BPF_RET_K, _SECCOMP_RET_KILL_PROCESS),
        _instruction(_BPF_JEQ_K, _CLONE3, jf=1),
        _instruction(_BPF_RET_K, _SECCOMP_RET_ERRNO | _ENOSYS),
    ]
    for number in denied:
        program += [
            _instruction(_BPF_JEQ_K, number, jf=1),
            _instruction(_BPF_RET_K, _SECCOMP_RET_ERRNO | _EPERM),
        ]
    program += [
        _instruction(_BPF_JEQ_K, clone, jf=3),
        _instruction(_BPF_LD_W_ABS, 16),
        _instruction(_BPF_JSET_K, _CLONE_THREAD, jt=1),
        _instruction(_BPF_RET_K, _SECCOMP_RET_ERRNO | _EPERM),
        _instruction(_BPF_RET_K, _SECCOMP_RET_ALLOW),
    ]
    return b"".join(program)


def interpreter() -> str:
    """The base interpreter (not a virtual environment's link to it)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _site_dirs() -> set[str]:
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    paths = sysconfig.get_paths(vars=base)
    return {os.path.realpath(paths[n]) for n in ("purelib", "platlib") if n in paths}


def package_dirs(names: tuple[str, ...]) -> dict[str, str]:
    """Host folders of the allowed packages (and their vendored `NAME.libs`), by name."""
    found: dict[str, str] = {}
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))).resolve()
        found[name] = str(folder)
        libs = folder.parent / f"{name}.libs"
        if libs.is_dir():
            found[f"{name}.libs"] = str(libs)
    return found


def _root_links() -> list[str]:
    """/bin, /lib ... as on the host: links into /usr (merged /usr) or read-only binds."""
    args: list[str] = []
    for name in MERGED_ROOT_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def command(
    *,
    harness: str,
    argv: list[str],
    packages: dict[str, str],
    disk_bytes: int,
    fds: dict[str, int],
    env: dict[str, str],
) -> list[str]:
    """The bwrap command line that runs `python -I -S -B HARNESS argv...` in a new sandbox.

    fds: "program" (a file copied to WORKDIR/main.py), "info" (bwrap writes the child pid
    and namespace ids there), "seccomp" (the filter, or absent).
    """
    prefix = os.path.realpath(sys.base_prefix)
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user"]
    args += ["--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
    args += ["--ro-bind", "/usr", "/usr", *_root_links()]
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        args += ["--ro-bind", prefix, prefix]
    for site in sorted(_site_dirs()):
        if site.startswith(prefix + "/") and os.path.isdir(site):
            args += ["--tmpfs", site, "--remount-ro", site]  # only what is bound below
    for name, folder in sorted(packages.items()):
        args += ["--ro-bind", folder, f"{PACKAGES}/{name}"]
    args += ["--ro-bind", harness, HARNESS, "--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(disk_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    args += ["--size", str(disk_bytes), "--tmpfs", WORKDIR]
    args += ["--perms", "0644", "--file", str(fds["program"]), f"{WORKDIR}/main.py"]
    args += ["--remount-ro", "/", "--chdir", WORKDIR, "--info-fd", str(fds["info"])]
    if "seccomp" in fds:
        args += ["--seccomp", str(fds["seccomp"])]
    args += ["--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", interpreter(), "-I", "-S", "-B", HARNESS, *argv]


@functools.cache
def unavailable_reason() -> str | None:
    """Why bubblewrap cannot isolate programs on this machine (None: it can)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})"
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (Debian/Ubuntu)"
    probe = [binary, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
    probe += ["--ro-bind", "/usr", "/usr", *_root_links(), "--proc", "/proc", "--dev", "/dev"]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr"):
        probe += ["--ro-bind", prefix, prefix]
    probe += ["--", interpreter(), "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30, env={}, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start: {error}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        hint = (
            " (user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1, "
            "or user.max_user_namespaces > 0, or an AppArmor profile for bwrap)"
        )
        return f"bubblewrap cannot create a sandbox here: {said[-1] if said else ''}{hint}"
    return None
