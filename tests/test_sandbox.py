"""Acceptance tests for the code sandbox: well-behaved programs, limits, hostile programs.

Every program runs only through `run_program`. Each hostile program asserts that its attack
worked, so a contained attack shows up as a non-passing outcome, and the test then checks the
host side: files, listener, victim process, leftover processes, the working dir. Modes (see
sandbox_helpers.py): "strong" (bubblewrap, the default), "strong-no-hook" (bubblewrap without
the audit hook: the operating-system layer alone) and "weak" (the in-process sandbox, opt-in).
Strong modes are skipped where bubblewrap cannot run, and fail there with
LORABENCH_REQUIRE_BWRAP=1. More: test_sandbox_hostile.py (escapes), test_sandbox_forgery.py
(forged passes), test_sandbox_corpus.py (ordinary programs must pass).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_helpers import (
    HOOKED,
    MODES,
    REQUIRE_ENV,
    STRONG,
    bwrap_required,
    contained,
    limits_for,
    modes,
    require,
    require_strong,
)

from lorabench.sandbox import (
    Outcome,
    SandboxLimits,
    SandboxUnavailable,
    _bwrap,
    run_program,
    run_programs,
    strong_sandbox_problem,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")


# --- the modes -------------------------------------------------------------------------


def test_strong_sandbox_is_available_where_required():
    problem = strong_sandbox_problem()
    if problem is not None and not bwrap_required():
        pytest.skip(f"strong sandbox unavailable: {problem} (set {REQUIRE_ENV}=1 to fail)")
    assert problem is None, f"{REQUIRE_ENV}=1 but: {problem}"


def test_strong_is_the_default():
    assert SandboxLimits().isolation == "strong"
    assert SandboxLimits().audit_hook


def test_weak_mode_is_never_used_silently(monkeypatch, tmp_path):
    """Without bubblewrap, the default refuses to run rather than fall back to weak."""
    _bwrap.unavailable_reason.cache_clear()
    try:
        monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no bwrap on PATH
        assert shutil.which("bwrap") is None
        with pytest.raises(SandboxUnavailable) as raised:
            run_program("print('ran')\n")
        message = str(raised.value)
        assert "bubblewrap" in message and 'sandbox = "weak"' in message
        with pytest.raises(SandboxUnavailable):
            run_program("print('ran')\n", SandboxLimits(audit_hook=False))
        # The explicit opt-in still runs.
        assert run_program("print('ran')\n", SandboxLimits(isolation="weak")).passed
    finally:
        monkeypatch.undo()
        _bwrap.unavailable_reason.cache_clear()


# --- well-behaved programs -------------------------------------------------------------


@modes()
def test_normal_program_passes_and_output_is_captured(mode):
    result = run_program(
        "import sys\nprint('out', 6 * 7)\nprint('err', file=sys.stderr)\n", require(mode)
    )
    assert result.outcome is Outcome.PASSED and result.passed and result.finished
    assert result.exit_code == 0
    assert result.stdout == "out 42\n"
    assert result.stderr == "err\n"
    assert result.reason == "" and not result.truncated
    assert "rlimits" in result.isolation
    assert ("audit-hook" in result.isolation) == MODES[mode].audit_hook
    if mode in STRONG:
        assert {"bubblewrap", "pid-namespace", "network-namespace"} <= set(result.isolation)
        assert result.pid_namespace is not None
    else:
        assert "bubblewrap" not in result.isolation and result.pid_namespace is None


@modes(*STRONG)
def test_strong_program_sees_its_own_small_world(mode):
    source = (
        "import os, socket\n"
        "print(os.getuid(), os.getgid(), os.getcwd(), socket.gethostname())\n"
        "print(sorted(os.environ))\n"
    )
    if MODES[mode].audit_hook:  # socket.gethostname is refused by the hook
        source = source.replace("socket.gethostname()", "os.uname().nodename")
    result = run_program(source, require(mode))
    assert result.passed, result
    first, second = result.stdout.splitlines()
    assert first == "65534 65534 /sandbox/work sandbox"
    assert "PATH" in second and "LORABENCH" not in second and "HOME" in second


@modes()
def test_program_may_use_its_working_directory(mode):
    source = (
        "import os, tempfile\n"
        "open('data.txt', 'w').write('kept')\n"
        "os.mkdir('sub'); os.rename('data.txt', 'sub/data.txt')\n"
        "with tempfile.NamedTemporaryFile('w') as f: f.write('x')\n"
        "print(open('sub/data.txt').read()); os.remove('sub/data.txt'); os.rmdir('sub')\n"
    )
    result = run_program(source, require(mode))
    assert result.passed, result.stderr
    assert result.stdout == "kept\n"


@modes()
def test_failing_assertion_fails_with_the_reason(mode):
    result = run_program("assert 1 + 1 == 3, 'arithmetic'\n", require(mode))
    assert result.outcome is Outcome.FAILED and not result.finished
    assert result.exit_code == 1
    assert result.reason == "AssertionError: arithmetic"


@modes()
def test_early_exit_is_a_failure_even_with_status_zero(mode):
    result = run_program("import sys\nsys.exit(0)\nprint('never')\n", require(mode))
    assert result.outcome is Outcome.FAILED and not result.finished
    assert "exited before its end" in result.reason
    assert result.stdout == ""


@modes()
def test_timeout_is_reported_as_timeout(mode):
    limits = limits_for(mode, timeout_s=1.0)
    result = run_program("import time\nprint('started', flush=True)\ntime.sleep(30)\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.stdout == "started\n"
    assert 1.0 <= result.duration_s < 3.0
    assert result.reason == "wall-clock limit of 1 s"


@modes()
def test_cpu_time_limit_is_a_timeout(mode):
    limits = limits_for(mode, timeout_s=20.0, cpu_time_s=1)
    result = run_program("while True:\n    pass\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.exit_code == -signal.SIGXCPU
    assert result.reason == "CPU-time limit of 1 s"
    assert result.duration_s < 10.0


@modes()
def test_closing_stdout_does_not_escape_the_timeout(mode):
    limits = limits_for(mode, timeout_s=1.0)
    result = run_program("import os, time\nos.close(1); os.close(2)\ntime.sleep(30)\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.duration_s < 3.0


@modes(*HOOKED)
def test_parallel_runs_keep_input_order(mode):
    sources = [f"print({i} ** 2)" for i in range(6)] + ["raise ValueError('six')"]
    results = run_programs(sources, require(mode), workers=3)
    assert [r.stdout for r in results[:6]] == [f"{i**2}\n" for i in range(6)]
    assert all(r.passed for r in results[:6])
    assert results[6].reason == "ValueError: six"


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="cpu_time_s"):
        SandboxLimits(cpu_time_s=0)
    with pytest.raises(ValueError, match="open_files"):
        SandboxLimits(open_files=3)
    with pytest.raises(ValueError, match="disk_bytes"):
        SandboxLimits(disk_bytes=1000)
    with pytest.raises(ValueError, match="isolation"):
        SandboxLimits(isolation="none")  # type: ignore[arg-type]
    assert SandboxLimits(timeout_s=2.5).cpu_seconds == 3


# --- hostile programs ------------------------------------------------------------------


@modes()
def test_infinite_loop(mode):
    result = contained("while True:\n    pass\n", mode, limits_for(mode, timeout_s=1.0))
    assert result.outcome is Outcome.TIMED_OUT


@modes()
def test_fork_bomb(mode):
    # Bounded (at most 2**6 processes) in case containment ever regresses on a shared machine.
    source = "import os, time\nfor _ in range(6):\n    os.fork()\ntime.sleep(60)\n"
    result = contained(source, mode)
    assert result.outcome is Outcome.FAILED
    assert "PermissionError" in result.reason or "BlockingIOError" in result.reason


@modes()
def test_ten_gigabyte_allocation(mode):
    result = contained("block = bytearray(10 * 2**30)\n", mode)
    assert result.outcome is Outcome.FAILED
    assert result.reason == "MemoryError"


@modes()
def test_printing_a_gigabyte(mode):
    source = "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    limits = limits_for(mode, output_bytes=1 << 16)
    result = contained(source, mode, limits)
    assert result.outcome is Outcome.KILLED and result.truncated
    assert len(result.stdout.encode()) + len(result.stderr.encode()) <= 1 << 16
    assert result.reason == f"output over {1 << 16} bytes"


def _private_and_open_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A root-only folder, and a world-writable one that only the audit hook protects (weak)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)
    return private, public


@modes()
def test_writing_outside_the_working_dir(mode, tmp_path):
    private, public = _private_and_open_dirs(tmp_path)
    targets = [private / "evil.txt", public / "evil.txt", tmp_path / "evil.txt"]
    source = "".join(
        f"try:\n    open({str(t)!r}, 'w').write('pwned')\nexcept OSError as e:\n    print(e)\n"
        for t in targets
    )
    source += f"assert any(__import__('os').path.exists(p) for p in {[str(t) for t in targets]})\n"
    contained(source, mode)
    assert not any(t.exists() for t in targets)


@modes()
def test_deleting_files(mode, tmp_path):
    private, public = _private_and_open_dirs(tmp_path)
    sentinels = []
    for folder in (private, public):
        sentinel = folder / "sentinel.txt"
        sentinel.write_text("precious")
        # In weak mode only the audit hook stands between nobody and a world-writable file.
        sentinel.chmod(0o644 if folder == private else 0o666)
        sentinels.append(sentinel)
    attacks = [
        "os.remove({p!r})",
        "os.unlink({p!r})",
        "os.rename({p!r}, 'stolen.txt')",
        "os.truncate({p!r}, 0)",
        "open({p!r}, 'w').close()",
        "shutil.rmtree(os.path.dirname({p!r}))",
        "pathlib.Path({p!r}).unlink()",
    ]
    source = "import os, pathlib, shutil\n"
    for sentinel in sentinels:
        for attack in attacks:
            source += f"try:\n    {attack.format(p=str(sentinel))}\nexcept OSError:\n    pass\n"
    source += f"assert not all(os.path.getsize(p) for p in {[str(s) for s in sentinels]})\n"
    contained(source, mode)
    assert [s.read_text() for s in sentinels] == ["precious"] * len(sentinels)


@modes()
def test_opening_a_socket(mode):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        source = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'pwned')\n"
        )
        result = contained(source, mode)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.outcome is Outcome.FAILED


PROCESS_ATTACKS = {
    "os.system": "rc = os.system('echo pwned > {m}')\nassert rc == 0",
    "subprocess": "subprocess.run(['/bin/sh', '-c', 'echo pwned > {m}'], check=True)",
    "posix_spawn": (
        "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo pwned > {m}'], {{}})\n"
        "assert os.waitpid(pid, 0)[1] == 0"
    ),
    "exec": "os.execv('/bin/sh', ['sh', '-c', 'echo pwned > {m}'])",
    "multiprocessing": (
        "import multiprocessing\n"
        "p = multiprocessing.Process(target=open, args=({m!r}, 'w'))\np.start(); p.join()\n"
        "assert p.exitcode == 0"
    ),
}


@modes()
@pytest.mark.parametrize("attack", list(PROCESS_ATTACKS))
def test_starting_processes(mode, attack, tmp_path):
    _, public = _private_and_open_dirs(tmp_path)
    marker = public / "marker.txt"
    source = "import os, subprocess\n" + PROCESS_ATTACKS[attack].format(m=str(marker)) + "\n"
    contained(source, mode)
    assert not marker.exists()


@modes()
def test_killing_another_process(mode):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        source = (
            "import os, signal\n"
            f"for call in (lambda: os.kill({victim.pid}, 9), lambda: os.killpg({victim.pid}, 9)):\n"
            "    try:\n        call()\n    except OSError as e:\n        print(e)\n"
            "import time; time.sleep(0.2)\n"
            f"os.kill({victim.pid}, 0)\n"
        )
        contained(source, mode)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@modes()
def test_reading_environment_secrets(mode, monkeypatch):
    secret = "s3cr3t-" + os.urandom(8).hex()
    monkeypatch.setenv("LORABENCH_TEST_SECRET", secret)
    source = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for pid in ('self', os.getppid(), 1):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ').read())\n"
        "    except OSError as e:\n        print(e)\n"
        "assert 'LORABENCH_TEST_SECRET' in os.environ\n"
    )
    result = contained(source, mode)
    assert secret not in result.stdout + result.stderr
    assert "LORABENCH_TEST_SECRET" not in result.stdout


@modes(*STRONG)
def test_environment_of_every_visible_process_is_clean(mode, monkeypatch):
    """bwrap itself (pid 1 in the program's namespace) runs with an empty environment."""
    secret = "s3cr3t-" + os.urandom(8).hex()
    monkeypatch.setenv("LORABENCH_TEST_SECRET", secret)
    source = (
        "import os\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n        print(pid, open(f'/proc/{pid}/environ').read())\n"
        "    except OSError as e:\n        print(e)\n"
        "assert 'LORABENCH_TEST_SECRET' in open('/proc/1/environ').read()\n"
    )
    result = contained(source, mode)
    assert secret not in result.stdout + result.stderr


@modes(*HOOKED)
def test_ctypes_is_refused(mode):
    result = contained("import ctypes\nctypes.CDLL(None).system(b'true')\n", mode)
    assert "ctypes refused" in result.reason


@modes(*HOOKED)
def test_reading_files_outside_is_refused(mode, tmp_path):
    _, public = _private_and_open_dirs(tmp_path)
    (public / "secret.txt").write_text("top secret")
    (public / "secret.txt").chmod(0o644)
    source = f"print(open({str(public / 'secret.txt')!r}).read())\n"
    result = contained(source, mode)
    assert "top secret" not in result.stdout
    if mode == "weak":
        assert result.reason.startswith("PermissionError: sandbox: reading"), result
    else:  # strong: the file is not even there (the mount namespace), the hook refuses first
        assert "PermissionError" in result.reason or "FileNotFoundError" in result.reason


def test_require_strong_follows_the_environment(monkeypatch):
    """The skip-or-fail rule itself: with bubblewrap missing, fail only when required."""
    monkeypatch.setattr("sandbox_helpers.strong_sandbox_problem", lambda: "no bwrap here")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no bwrap here"):
        require_strong()
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="no bwrap here"):
        require_strong()


@modes(*HOOKED)
def test_dir_fd_walk_is_refused_by_the_hook(mode, tmp_path):
    """The hook checks paths against the cwd, but os.open(path, dir_fd=fd) resolves them
    against fd: a descriptor of the working dir, a deeper cwd and '../' * n reach '/'."""
    private, _ = _private_and_open_dirs(tmp_path)
    secret = "s3cr3t-" + os.urandom(8).hex()
    (private / "secret.txt").write_text(secret)
    relative = str(private / "secret.txt").lstrip("/")
    source = (
        "import os\n"
        "wfd = os.open('.', os.O_RDONLY)\n"
        "os.makedirs('a/b/c/d/e/f/g/h/i/j')\nos.chdir('a/b/c/d/e/f/g/h/i/j')\n"
        "root = os.open('../' * 10, os.O_RDONLY | os.O_DIRECTORY, dir_fd=wfd)\n"
        "print(sorted(os.listdir(root)))\n"
        f"print(os.read(os.open({relative!r}, os.O_RDONLY, dir_fd=root), 100))\n"
    )
    result = contained(source, mode)
    assert secret not in result.stdout + result.stderr
    assert result.reason.startswith("PermissionError: sandbox: "), result


@modes()
def test_site_builtins_are_there_as_under_python_dash_i(mode):
    """`python -S` leaves out what site adds to builtins (exit, quit, help, copyright ...):
    a program using them behaves differently than under a plain `python -I`."""
    source = "print([callable(f) for f in (exit, quit, help, copyright, credits, license)])\n"
    result = run_program(source, require(mode))
    assert result.passed, result.reason
    assert result.stdout == "[True, True, True, True, True, True]\n"
