"""Many processes on one SQLite file: every job claimed exactly once, no lock errors."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "queue_throughput.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("queue_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_four_processes_claim_500_jobs_exactly_once(tmp_path: Path):
    result = load_benchmark().run(str(tmp_path / "race.db"), workers=4, jobs=500)
    assert result["errors"] == []  # no "database is locked" escaped
    assert result["claimed"] == result["distinct_claimed"] == 500
    assert result["done"] == result["attempts"] == result["metric_rows"] == 500
