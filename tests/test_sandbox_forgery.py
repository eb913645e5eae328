"""No forged passes: a program whose tests fail must never be graded as passed.

Each attack below runs before a failing HumanEval-style check (`check(candidate)` asserts a
wrong answer) and tries to end the program so that it looks like a pass: exit status 0
early, a fake end marker, the harness's own end event, a trace function jumping past the
asserts. Each must come out not passed with `finished` False. The positive controls show
that the same program passes without the failing assert, so these tests can fail.
"""

from __future__ import annotations

import sys

import pytest
from sandbox_helpers import HOOKED, extension_loader, modes, require

from lorabench.sandbox import Outcome, SandboxResult, run_program

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")

_PRELUDE = """\
import os, sys
# The harness's own os._exit, kept in its globals past the guard: a real exit status 0.
real_exit = sys._getframe(0).f_back.f_globals.get('_EXIT', os._exit)


def candidate(x):
    return x + 1


"""
_FAILING_CHECK = """\
def check(candidate):
    assert candidate(1) == 2
    assert candidate(2) == 4, 'the tests failed'
    return None


"""
_PASSING_CHECK = _FAILING_CHECK.replace("== 4, 'the tests failed'", "== 3")
_RUN_CHECK = "check(candidate)\n"
_FIND_NONCE_IN_MEMORY = """\
import re, struct
# A bytes object of 32 lowercase hex digits: its type pointer, size, hash, then the digits.
_head = re.escape(struct.pack('<Qq', id(bytes), 32)) + rb'.{8}([0-9a-f]{32})\\x00'
def find_nonce(maps, peek):
    found = set()
    for line in maps.splitlines():
        span, permissions = line.split()[:2]
        low, high = (int(x, 16) for x in span.split('-'))
        if permissions.startswith('rw') and high - low < 256 << 20:
            try:
                found.update(m.group(1) for m in re.finditer(_head, peek(low, high - low), re.S))
            except OSError:
                pass
    return found
def forge(nonce):
    for fd in range(3, 64):
        try:
            os.write(fd, nonce)
        except OSError:
            pass
"""

ATTACKS = {
    "os._exit": "os._exit(0)",
    "harness _exit": "real_exit(0)",
    "fresh posix module": (
        "import _imp, importlib.machinery\n"
        "posix = _imp.create_builtin(importlib.machinery.ModuleSpec('posix', None))\n"
        "posix._exit(0)"
    ),
    "sys.exit in a test function": (
        "def test_first():\n    sys.exit(0)\n"
        "_check = check\n"
        "def check(candidate):\n    test_first()\n    _check(candidate)"
    ),
    "raise SystemExit": "raise SystemExit(0)",
    # exit() as site defines it (the sandbox runs python -S, which leaves the name out).
    "site's exit()": "import _sitebuiltins\n_sitebuiltins.Quitter('exit', 'EOF')(0)",
    "SystemExit swallowed at exit": (
        "import atexit\natexit.register(real_exit, 0)\nsys.excepthook = lambda *a: None"
    ),
    "SIGKILL itself": "os.kill(os.getpid(), 9)",
    "SIGTERM itself": "os.kill(os.getpid(), 15)",
    "signal.raise_signal": "import signal\nsignal.raise_signal(signal.SIGKILL)",
    "signal.raise_signal SIGTERM": "import signal\nsignal.raise_signal(signal.SIGTERM)",
    "os.abort": "os.abort()",
    "close stdout and stderr": "os.close(1)\nos.close(2)",
    "sys.stdout.close": "sys.stdout.close()",
    "fake marker on every fd": (
        "for fd in range(3, 51):\n"
        "    try:\n        os.write(fd, b'0' * 32)\n    except OSError:\n        pass\n"
        "real_exit(0)"
    ),
    "sys.audit end event": "sys.audit('lorabench.end')\nreal_exit(0)",
    "harness frame's audit": (
        "runner = sys._getframe(0).f_back\n"
        "audit = runner.f_locals.get('audit', sys.audit)\n"
        "audit('lorabench.begin')\naudit('lorabench.end')\n"
        "exec(\"audit('lorabench.end')\", runner.f_globals, runner.f_locals)\n"
        "real_exit(0)"
    ),
    "re-enter the harness's _run": (
        "open('empty.py', 'w').close()\n"
        "sys._getframe(0).f_back.f_globals['_run'](os.path.abspath('empty.py'), sys.audit)\n"
        "real_exit(0)"
    ),
    "atexit os._exit": "import atexit\natexit.register(os._exit, 0)",
    "atexit harness _exit": "import atexit\natexit.register(real_exit, 0)",
    "thread exits while main blocks": (
        "import threading, time\n"
        "def leave():\n    time.sleep(0.1)\n    real_exit(0)\n"
        "threading.Thread(target=leave).start()\n"
        "time.sleep(3)"
    ),
    "thread os._exit": (
        "import threading\nt = threading.Thread(target=os._exit, args=(0,))\nt.start(); t.join()"
    ),
}
# Refused by the audit hook (where there is one) before they could jump past the asserts.
TRACE_ATTACKS = {
    "sys.settrace jump": (
        "_line = check.__code__.co_firstlineno + 2\n"
        "def jump(frame, event, arg):\n"
        "    if frame.f_code is check.__code__ and event == 'line' and frame.f_lineno == _line:\n"
        "        frame.f_lineno = _line + 1\n"
        "    return jump\n"
        "sys.settrace(jump)"
    ),
    "sys.setprofile": "sys.setprofile(lambda *a: None)",
    "threading.settrace": (
        "import threading\n"
        "threading.settrace(lambda *a: None)\n"
        "try:\n    t = threading.Thread(target=len, args=('x',))\n    t.start(); t.join()\n"
        "except RuntimeError:\n    pass\n"
        "sys.settrace(lambda *a: None)"
    ),
    "gc finds the nonce": (
        "import gc\n"
        "for o in gc.get_objects():\n"
        "    for cell in getattr(o, '__closure__', None) or ():\n"
        "        try:\n            v = cell.cell_contents\n        except ValueError:\n"
        "            continue\n"
        "        if isinstance(v, bytes) and len(v) == 32:\n"
        "            for fd in range(3, 64):\n"
        "                try:\n                    os.write(fd, v)\n"
        "                except OSError:\n                    pass\n"
        "            real_exit(0)"
    ),
}


def forged(attack: str, mode: str, check: str = _FAILING_CHECK) -> SandboxResult:
    source = _PRELUDE + check + attack + "\n" + _RUN_CHECK
    return run_program(source, require(mode))


def assert_not_passed(result: SandboxResult) -> None:
    assert result.outcome is not Outcome.PASSED, result
    assert not result.passed and result.finished is False, result


# --- the controls ----------------------------------------------------------------------


@modes()
def test_control_the_check_passes_without_the_failing_assert(mode):
    result = forged("pass", mode, _PASSING_CHECK)
    assert result.outcome is Outcome.PASSED and result.finished, result


@modes()
def test_control_the_failing_assert_fails(mode):
    result = forged("pass", mode)
    assert result.outcome is Outcome.FAILED and not result.finished
    assert result.reason == "AssertionError: the tests failed"


@modes()
def test_control_a_harmless_attack_keeps_a_passing_check_passing(mode):
    """The attack's scaffolding (the prelude's frame lookup, a thread) is no failure itself."""
    harmless = (
        "import threading\nt = threading.Thread(target=len, args=('x',))\nt.start(); t.join()"
    )
    result = forged(harmless if mode != "weak" else "pass", mode, _PASSING_CHECK)
    assert result.passed, result


# --- the attacks -----------------------------------------------------------------------


@modes()
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_early_exit_or_fake_marker_is_not_a_pass(attack, mode):
    """The end marker alone (no hook needed) tells an early exit from the program's end."""
    assert_not_passed(forged(ATTACKS[attack], mode))


@modes(*HOOKED)
@pytest.mark.parametrize("attack", list(TRACE_ATTACKS))
def test_tracing_and_introspection_are_refused(attack, mode):
    result = forged(TRACE_ATTACKS[attack], mode)
    assert_not_passed(result)
    assert "sandbox: " in result.reason and "refused" in result.reason, result


_READ_OWN_MEMORY = _FIND_NONCE_IN_MEMORY + (
    "maps = open('/proc/self/maps').read()\n"
    "mem = os.open('/proc/self/mem', os.O_RDONLY)\n"
    "found = find_nonce(maps, lambda at, size: os.pread(mem, size, at))\n"
    "if len(found) == 1:\n    forge(found.pop())\n    real_exit(0)"
)
NO_HOOK_ATTACKS = {
    "sys.settrace jump": TRACE_ATTACKS["sys.settrace jump"],
    "gc finds the nonce": TRACE_ATTACKS["gc finds the nonce"],
    "/proc/self/mem": _READ_OWN_MEMORY,
}


@pytest.mark.xfail(
    strict=True,
    reason="audit_hook=False also drops what keeps the end marker's nonce private (gc, "
    "settrace, ctypes, /proc/self/mem are allowed): without the hook a pass can be forged",
)
@modes("strong-no-hook")
@pytest.mark.parametrize("attack", list(NO_HOOK_ATTACKS))
def test_without_the_hook_a_pass_cannot_be_forged(attack, mode):
    assert_not_passed(forged(NO_HOOK_ATTACKS[attack], mode))


@modes(*HOOKED)
def test_reading_its_own_memory_is_refused(mode):
    result = forged(_READ_OWN_MEMORY, mode)
    assert_not_passed(result)
    assert "sandbox: " in result.reason and "refused" in result.reason, result


@modes(*HOOKED)
def test_the_nonce_cannot_be_read_from_memory_through_a_dir_fd_walk(mode):
    """/proc/self/mem holds the nonce. The hook resolves paths against the cwd, not dir_fd:
    a descriptor of the working dir, a cwd deeper down, and '../' * n reach /proc."""
    walk = (
        _FIND_NONCE_IN_MEMORY + "wfd = os.open('.', os.O_RDONLY)\n"
        "os.makedirs('a/b/c/d/e/f/g/h/i/j')\nos.chdir('a/b/c/d/e/f/g/h/i/j')\n"
        "def dopen(path):\n"
        "    return os.open('../' * 10 + path.lstrip('/'), os.O_RDONLY, dir_fd=wfd)\n"
        "maps = b''.join(iter(lambda fd=dopen('/proc/self/maps'): os.read(fd, 65536), b''))\n"
        "mem = dopen('/proc/self/mem')\n"
        "found = find_nonce(maps.decode(), lambda at, size: os.pread(mem, size, at))\n"
        "print('candidates', len(found))\n"
        "if len(found) == 1:\n    forge(found.pop())\n    real_exit(0)"
    )
    assert_not_passed(forged(walk, mode))


@modes(*HOOKED)
def test_the_nonce_cannot_be_read_from_memory_by_a_c_extension(mode):
    """Native code loaded from the working dir can read the whole process: the hook should
    refuse extension modules from outside the Python installation."""
    native = (
        extension_loader() + _FIND_NONCE_IN_MEMORY + "def native_open(path):\n"
        "    fd, error = evil.call(257, -100, path.encode() + b'\\0', os.O_RDONLY)\n"
        "    assert fd >= 0, error\n    return fd\n"
        "maps = b''.join(iter(lambda fd=native_open('/proc/self/maps'): os.read(fd, 65536), b''))\n"
        "mem = native_open('/proc/self/mem')\n"
        "found = find_nonce(maps.decode(), lambda at, size: os.pread(mem, size, at))\n"
        "print('candidates', len(found))\n"
        "if len(found) == 1:\n    forge(found.pop())\n    evil.exit(0)"
    )
    assert_not_passed(forged(native, mode))
