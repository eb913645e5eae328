"""No false failures: ordinary programs pass in the sandbox and print what they print outside.

The corpus (tests/sandbox_programs/*.py) is HumanEval-style: each program defines a function,
checks it with asserts and prints a few deterministic lines, each touching one area of the
standard library (typing, collections.abc, threads, sqlite3, unittest, logging to a file in
the working dir, ...). Each must pass in every mode, with the same stdout as a plain
`python -I` run of the same file outside any sandbox.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sandbox_helpers import PROGRAMS, modes, require

from lorabench.sandbox import SandboxResult, run_programs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")

CORPUS = {path.stem: path.read_text(encoding="utf-8") for path in sorted(PROGRAMS.glob("*.py"))}
NEEDS = {"numpy_use": "numpy"}  # beyond the standard library: skipped where not installed


def _outside(source: str) -> subprocess.CompletedProcess:
    """Run a program with plain `python -I` in a fresh folder, environment as in the sandbox."""
    with tempfile.TemporaryDirectory(prefix="lorabench-corpus-") as folder:
        path = Path(folder, "main.py")
        path.write_text(source, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder}
        env |= {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(
            [sys.executable, "-I", str(path)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def outside() -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CORPUS, pool.map(_outside, CORPUS.values()), strict=True))


@pytest.fixture(scope="module")
def sandboxed():
    """The whole corpus run once per mode (in parallel), on first use."""
    done: dict[str, dict[str, SandboxResult]] = {}

    def results(mode: str) -> dict[str, SandboxResult]:
        limits = require(mode)
        if mode not in done:
            ran = run_programs(list(CORPUS.values()), limits, workers=4)
            done[mode] = dict(zip(CORPUS, ran, strict=True))
        return done[mode]

    return results


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@modes()
@pytest.mark.parametrize("name", list(CORPUS))
def test_ordinary_program_passes_with_the_same_output(name, mode, outside, sandboxed):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed")
    reference = outside[name]
    assert reference.returncode == 0, f"the program fails outside the sandbox:\n{reference.stderr}"
    result = sandboxed(mode)[name]
    assert result.passed and result.finished, f"{result.reason}\n{result.stderr[-3000:]}"
    assert result.stdout == reference.stdout
    assert result.stdout, "each program prints something to compare"
