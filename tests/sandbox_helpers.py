"""Shared by the sandbox tests: the modes, the skip-or-require rule for bubblewrap, `contained`.

Strong modes need a working bubblewrap. Without one their tests are skipped with the reason
`strong_sandbox_problem()` gives, unless LORABENCH_REQUIRE_BWRAP=1 (CI sets it): then they
fail, so a CI machine that lost bubblewrap cannot pass by skipping the sandbox tests.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from lorabench.sandbox import (
    Outcome,
    SandboxLimits,
    SandboxResult,
    leftover_processes,
    run_program,
    strong_sandbox_problem,
)

TIMEOUT = 5.0
REQUIRE_ENV = "LORABENCH_REQUIRE_BWRAP"
MODES = {
    "strong": SandboxLimits(timeout_s=TIMEOUT),
    "strong-no-hook": SandboxLimits(timeout_s=TIMEOUT, audit_hook=False),
    "weak": SandboxLimits(timeout_s=TIMEOUT, isolation="weak"),
}
STRONG = ("strong", "strong-no-hook")
HOOKED = ("strong", "weak")
PROGRAMS = Path(__file__).parent / "sandbox_programs"
# Printed first by `contained`: where the program ran, to check the host side afterwards.
_CWD_LINE = "import os as _os; print('CWD=' + _os.getcwd(), flush=True); del _os\n"


def bwrap_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def require_strong() -> None:
    """Skip (or, with LORABENCH_REQUIRE_BWRAP=1, fail) where bubblewrap cannot run."""
    problem = strong_sandbox_problem()
    if problem is None:
        return
    if bwrap_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but the strong sandbox cannot run: {problem}")
    pytest.skip(f"strong sandbox unavailable: {problem}")


def require(mode: str) -> SandboxLimits:
    """The limits of a mode, after the skip-or-require check that strong modes need."""
    if MODES[mode].isolation == "strong":
        require_strong()
    return MODES[mode]


def limits_for(mode: str, **changes) -> SandboxLimits:
    return dataclasses.replace(require(mode), **changes)


def modes(*names: str):
    """Parametrize a test over sandbox modes; the test calls `require(mode)` first."""
    return pytest.mark.parametrize("mode", list(names or MODES))


# --- an independent look at the host's processes -----------------------------------------


def live_processes(result: SandboxResult) -> list[int]:
    """Every live (non-zombie) process of the run: same session as result.pid, or, in strong
    mode, in the program's pid namespace. Written apart from the module's own scan."""
    link = f"pid:[{result.pid_namespace}]" if result.pid_namespace is not None else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            namespace = os.readlink(entry / "ns" / "pid") if link else None
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        if int(fields[3]) == result.pid or (link is not None and namespace == link):
            found.append(int(entry.name))
    return found


def contained(
    source: str, mode: str, limits: SandboxLimits | None = None, *, must_fail: bool = True
) -> SandboxResult:
    """Run a hostile program; assert it did not pass, ended in time and left nothing behind.

    must_fail=False where the attack "works" inside the sandbox without reaching the host (a
    file in the private /dev/shm): then only the host side tells, and the caller checks it.
    """
    limits = limits or require(mode)
    started = time.monotonic()
    result = run_program(_CWD_LINE + source, limits)
    elapsed = time.monotonic() - started
    if must_fail:
        assert result.outcome is not Outcome.PASSED, result
        assert not result.finished, result
    assert elapsed < limits.timeout_s + 3.0, result
    assert live_processes(result) == []
    assert leftover_processes(result) == []
    cwd = result.stdout.splitlines()[0].removeprefix("CWD=") if result.stdout else ""
    if limits.isolation == "strong":
        assert result.pid_namespace is not None
        assert cwd == "/sandbox/work", result
        assert not Path("/sandbox").exists()  # the working dir never was on the host
    else:
        assert cwd.startswith("/") and not Path(cwd).exists(), result  # the temp dir is gone
    return result


def secret_file(folder: Path) -> tuple[Path, str]:
    """A file holding random contents in a 0700 folder."""
    private = folder / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    secret = "s3cr3t-" + os.urandom(16).hex()
    path = private / "secret.txt"
    path.write_text(secret)
    path.chmod(0o600)
    return path, secret


def assert_secret_kept(result: SandboxResult, secret: str) -> None:
    for text in (result.stdout, result.stderr, result.reason):
        assert secret not in text, result


# --- a C extension, compiled on the host, loaded by the program from its working dir ------

_EXTENSION_SOURCE = PROGRAMS / "evil_ext.c"
# Program text that writes the extension into the working dir and imports it as `evil`.
_LOAD_EXTENSION = """\
import base64 as _b64, importlib.machinery as _machinery, importlib.util as _util, os as _os
_path = _os.path.abspath('evil' + {suffix!r})
with open(_path, 'wb') as _file:
    _file.write(_b64.b64decode({data!r}))
_loader = _machinery.ExtensionFileLoader('evil', _path)
evil = _util.module_from_spec(_util.spec_from_file_location('evil', _path, loader=_loader))
"""


@functools.cache
def _compile_extension() -> str | bytes:
    """The extension's bytes, or why it cannot be built here."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths().get("include")
    if compiler is None:
        return "no C compiler (cc) on this machine"
    if not include or not Path(include, "Python.h").exists():
        return "no Python.h to build a C extension against"
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "evil.so"
        command = [compiler, "-shared", "-fPIC", "-O1", f"-I{include}", str(_EXTENSION_SOURCE)]
        done = subprocess.run(
            [*command, "-o", str(target)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            return f"the C extension did not compile: {done.stderr.strip()[-500:]}"
        return target.read_bytes()


def extension_loader() -> str:
    """Program text defining `evil`, the compiled extension (skips where cc is missing)."""
    built = _compile_extension()
    if isinstance(built, str):
        pytest.skip(built)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return _LOAD_EXTENSION.format(suffix=suffix, data=base64.b64encode(built).decode())
