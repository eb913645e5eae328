"""benchmarks/gpu_check.py: its smoke mode runs every part on the CPU, so the script that GPU
sessions run once cannot rot; the log parsing that reports a cut-off part is exact."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cut_off_pytest_log_reports_the_tests_that_finished():
    log = (
        "tests/test_cuda.py::test_a[lora] PASSED                 [  1%]\n"
        "tests/test_cuda.py::test_a[dora] FAILED                 [  2%]\n"
        "tests/test_cuda.py::test_b[fp32-lora] SKIPPED (no CUDA) [  3%]\n"
        "tests/test_cuda.py::test_c[vera] "  # cut off mid-line by the part's budget
    )
    outcomes = _module().pytest_outcomes(log)
    assert outcomes["counts"] == {"PASSED": 1, "FAILED": 1, "SKIPPED": 1}
    assert outcomes["failed"] == ["tests/test_cuda.py::test_a[dora]"]


def test_unknown_parts_are_refused():
    done = subprocess.run([sys.executable, str(SCRIPT), "--parts", "ax"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "unknown part(s) x" in done.stderr


@pytest.mark.slow
def test_smoke_runs_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
    logs = {p.name: p.read_text()[-2000:] for p in out.glob("*.log")}
    assert done.returncode == 0, (done.stdout, logs)
    summary = json.loads((out / "summary.json").read_text())
    assert {part: s["status"] for part, s in summary["parts"].items()} == dict.fromkeys(
        "abcd", "ok"
    )
    tests = json.loads((out / "part_a.json").read_text())
    assert tests["failed"] == [] and tests["counts"]["PASSED"] >= 60
    table = json.loads((out / "part_b.json").read_text())
    assert len(table["rows"]) == 19  # every row of the paper's Table II
    assert all(row["step_s"] > 0 and row["adapter_params"] > 0 for row in table["rows"])
    assert {row["paper_mb"] for row in table["rows"]} >= {30067.0, 52847.0, 81645.0}
    throughput = json.loads((out / "part_c_llama-tiny.json").read_text())
    assert throughput["modes"]["packed, eager"]["tokens_per_s"] > 0
    sweep = json.loads((out / "part_d.json").read_text())
    assert sweep[0]["setting"] == "noop" and sweep[0]["failed_in_pack"] == []
