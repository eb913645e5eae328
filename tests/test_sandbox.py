"""Acceptance tests for the code sandbox: each hostile program is contained, in every layer.

Every hostile program below runs only through `run_program`. Each one asserts that its
attack worked, so a contained attack shows up as a non-passing outcome, and the test then
checks the host side: files, listener, victim process, leftover processes, the temp dir.
Modes: "full" (the default), "hook-only" (what a machine without namespaces or setuid
gets: the audit hook and rlimits), "kernel-only" (no audit hook: namespaces, uid, rlimits).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorabench.tasks.sandbox import (
    Outcome,
    SandboxLimits,
    SandboxResult,
    run_program,
    run_programs,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")

TIMEOUT = 5.0
MODES = {
    "full": SandboxLimits(timeout_s=TIMEOUT),
    "hook-only": SandboxLimits(timeout_s=TIMEOUT, network_namespace=False, drop_privileges=False),
    "kernel-only": SandboxLimits(timeout_s=TIMEOUT, audit_hook=False),
}
ALL_MODES = pytest.mark.parametrize("mode", list(MODES))
HOOKED_MODES = pytest.mark.parametrize("mode", ["full", "hook-only"])
_CWD_LINE = "import os as _os; print('CWD=' + _os.getcwd(), flush=True); del _os\n"


def _live_session_members(sid: int) -> list[int]:
    """Independent of the module's own scan: every non-zombie process whose session is sid."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def contained(source: str, mode: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a hostile program; assert it did not pass, in time, and left nothing behind."""
    limits = limits or MODES[mode]
    started = time.monotonic()
    result = run_program(_CWD_LINE + source, limits)
    elapsed = time.monotonic() - started
    assert result.outcome is not Outcome.PASSED, result
    assert elapsed < limits.timeout_s + 2.0
    assert _live_session_members(result.pid) == []
    cwd = result.stdout.splitlines()[0].removeprefix("CWD=")
    assert cwd.startswith("/") and not Path(cwd).exists()
    return result


def need_layer(mode: str, layer: str) -> None:
    """Without the audit hook, the kernel layer the attack runs into must be there."""
    if mode == "kernel-only" and layer not in run_program("", MODES[mode]).isolation:
        pytest.skip(f"{layer} is not available on this machine")


# --- well-behaved programs -------------------------------------------------------------


def test_normal_program_passes_and_output_is_captured():
    result = run_program("import sys\nprint('out', 6 * 7)\nprint('err', file=sys.stderr)\n")
    assert result.outcome is Outcome.PASSED and result.passed
    assert result.exit_code == 0
    assert result.stdout == "out 42\n"
    assert result.stderr == "err\n"
    assert result.reason == "" and not result.truncated
    assert "rlimits" in result.isolation and "audit-hook" in result.isolation


def test_program_may_use_its_working_directory():
    source = (
        "import os, tempfile\n"
        "open('data.txt', 'w').write('kept')\n"
        "os.mkdir('sub'); os.rename('data.txt', 'sub/data.txt')\n"
        "with tempfile.NamedTemporaryFile('w') as f: f.write('x')\n"
        "print(open('sub/data.txt').read()); os.remove('sub/data.txt'); os.rmdir('sub')\n"
    )
    result = run_program(source)
    assert result.passed, result.stderr
    assert result.stdout == "kept\n"


def test_failing_assertion_fails_with_the_reason():
    result = run_program("assert 1 + 1 == 3, 'arithmetic'\n")
    assert result.outcome is Outcome.FAILED
    assert result.exit_code == 1
    assert result.reason == "AssertionError: arithmetic"


def test_early_exit_is_a_failure_even_with_status_zero():
    result = run_program("import sys\nsys.exit(0)\nprint('never')\n")
    assert result.outcome is Outcome.FAILED
    assert "exited before its end" in result.reason
    assert result.stdout == ""


def test_timeout_is_reported_as_timeout():
    limits = SandboxLimits(timeout_s=1.0)
    result = run_program("import time\nprint('started', flush=True)\ntime.sleep(30)\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.stdout == "started\n"
    assert 1.0 <= result.duration_s < 3.0
    assert result.reason == "wall-clock limit of 1 s"


def test_cpu_time_limit_is_a_timeout():
    limits = SandboxLimits(timeout_s=20.0, cpu_time_s=1)
    result = run_program("while True:\n    pass\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.exit_code == -signal.SIGXCPU
    assert result.reason == "CPU-time limit of 1 s"
    assert result.duration_s < 10.0


def test_closing_stdout_does_not_escape_the_timeout():
    limits = SandboxLimits(timeout_s=1.0)
    result = run_program("import os, time\nos.close(1); os.close(2)\ntime.sleep(30)\n", limits)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.duration_s < 3.0


def test_parallel_runs_keep_input_order():
    sources = [f"print({i} ** 2)" for i in range(6)] + ["raise ValueError('six')"]
    results = run_programs(sources, workers=3)
    assert [r.stdout for r in results[:6]] == [f"{i**2}\n" for i in range(6)]
    assert results[6].reason == "ValueError: six"


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="cpu_time_s"):
        SandboxLimits(cpu_time_s=0)
    assert SandboxLimits(timeout_s=2.5).cpu_seconds == 3


# --- hostile programs ------------------------------------------------------------------


@ALL_MODES
def test_infinite_loop(mode):
    limits = SandboxLimits(
        timeout_s=1.0,
        network_namespace=MODES[mode].network_namespace,
        drop_privileges=MODES[mode].drop_privileges,
        audit_hook=MODES[mode].audit_hook,
    )
    result = contained("while True:\n    pass\n", mode, limits)
    assert result.outcome is Outcome.TIMED_OUT


@ALL_MODES
def test_fork_bomb(mode):
    # Bounded (at most 2**6 processes) in case containment ever regresses on a shared machine.
    source = "import os, time\nfor _ in range(6):\n    os.fork()\ntime.sleep(60)\n"
    need_layer(mode, "dedicated-uid")
    result = contained(source, mode)
    assert result.outcome is Outcome.FAILED
    assert "PermissionError" in result.reason or "BlockingIOError" in result.reason


@ALL_MODES
def test_ten_gigabyte_allocation(mode):
    result = contained("block = bytearray(10 * 2**30)\n", mode)
    assert result.outcome is Outcome.FAILED
    assert result.reason == "MemoryError"


@ALL_MODES
def test_printing_a_gigabyte(mode):
    source = "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    limits = SandboxLimits(
        timeout_s=TIMEOUT,
        output_bytes=1 << 16,
        network_namespace=MODES[mode].network_namespace,
        drop_privileges=MODES[mode].drop_privileges,
        audit_hook=MODES[mode].audit_hook,
    )
    result = contained(source, mode, limits)
    assert result.outcome is Outcome.KILLED and result.truncated
    assert len(result.stdout.encode()) + len(result.stderr.encode()) <= 1 << 16
    assert result.reason == f"output over {1 << 16} bytes"


def _private_and_open_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A root-only folder, and a world-writable one that only the audit hook protects."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)
    return private, public


@ALL_MODES
def test_writing_outside_the_temp_dir(mode, tmp_path):
    need_layer(mode, "dedicated-uid")
    private, public = _private_and_open_dirs(tmp_path)
    targets = [private / "evil.txt"] + ([] if mode == "kernel-only" else [public / "evil.txt"])
    source = "".join(
        f"try:\n    open({str(t)!r}, 'w').write('pwned')\nexcept OSError as e:\n    print(e)\n"
        for t in targets
    )
    source += f"assert any(__import__('os').path.exists(p) for p in {[str(t) for t in targets]})\n"
    contained(source, mode)
    assert not any(t.exists() for t in targets)


@ALL_MODES
def test_deleting_files(mode, tmp_path):
    need_layer(mode, "dedicated-uid")
    private, public = _private_and_open_dirs(tmp_path)
    folders = [private] + ([] if mode == "kernel-only" else [public])
    sentinels = []
    for folder in folders:
        sentinel = folder / "sentinel.txt"
        sentinel.write_text("precious")
        # Only the audit hook stands between nobody and a world-writable file.
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


@ALL_MODES
def test_opening_a_socket(mode):
    need_layer(mode, "network-namespace")
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


@ALL_MODES
@pytest.mark.parametrize("attack", list(PROCESS_ATTACKS))
def test_starting_processes(mode, attack, tmp_path):
    need_layer(mode, "dedicated-uid")
    _, public = _private_and_open_dirs(tmp_path)
    marker = public / "marker.txt"
    source = "import os, subprocess\n" + PROCESS_ATTACKS[attack].format(m=str(marker)) + "\n"
    contained(source, mode)
    assert not marker.exists()


@ALL_MODES
def test_killing_another_process(mode):
    need_layer(mode, "dedicated-uid")
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


@ALL_MODES
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


@HOOKED_MODES
def test_ctypes_is_refused(mode):
    result = contained("import ctypes\nctypes.CDLL(None).system(b'true')\n", mode)
    assert "ctypes refused" in result.reason


@HOOKED_MODES
def test_reading_files_outside_is_refused(mode, tmp_path):
    private, public = _private_and_open_dirs(tmp_path)
    (public / "secret.txt").write_text("top secret")
    (public / "secret.txt").chmod(0o644)
    source = f"print(open({str(public / 'secret.txt')!r}).read())\n"
    result = contained(source, mode)
    assert "top secret" not in result.stdout
    assert "reading" in result.reason and "refused" in result.reason
