"""Command-line latency: wall time and peak memory of whole `lorabench` processes.

Each case runs `python -m lorabench ...` as a fresh process `--runs` times and reports the
median wall time and the median peak RSS (from wait4's rusage). The databases are built once
in a temporary folder: one with 10,000 queued jobs (for `status`) and one with 2,000 finished
jobs, each with three epochs of test and select metrics (for `report --table lr`).

    python benchmarks/cli_latency.py --runs 10 [--src /path/to/other/checkout] [--json]

`--src` runs another checkout's code (it goes first on PYTHONPATH), so a before/after pair
is measured on the same machine in the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {  # the goals: seconds, and MB for --help
    "--help": (0.5, 120.0),
    "status (10,000 jobs)": (1.0, None),
    "plan --preset paper-glue --dry-run": (1.5, None),
    "report --table lr (2,000 done jobs)": (3.0, None),
}
VARIANTS = ["lora", "rslora", "dora", "pissa", "milora", "olora", "lora-plus", "vera", "loha",
            "lokr"]  # fmt: skip
LRS = ["1e-5", "2e-5", "5e-5", "1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "5e-3", "1e-2"]


def environment(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def lorabench(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and stdout of one `python -m lorabench` process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "lorabench", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True,
    )  # fmt: skip
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"lorabench {' '.join(args)} exited {process.returncode}:\n{output}")
    return wall, usage.ru_maxrss / 1024, output


def build_databases(folder: Path, env: dict[str, str]) -> tuple[str, str]:
    queued, finished = str(folder / "queued.db"), str(folder / "finished.db")
    seeds = ",".join(str(s) for s in range(100))
    many_lrs = ",".join(f"{k}e-5" for k in range(1, 101))
    lorabench(["plan", "--db", queued, "--task", "bbc-news", "--variant", "lora",
               "--lr", many_lrs, "--seed", seeds], env, folder)  # fmt: skip
    lorabench(["plan", "--db", finished, "--task", "bbc-news", "--variant", ",".join(VARIANTS),
               "--lr", ",".join(LRS), "--seed", ",".join(str(s) for s in range(20))],
              env, folder)  # fmt: skip
    finish_all(finished, env)
    return queued, finished


FINISH_ALL = """
import random, sys
from lorabench.store import MetricRow, claim, finish, open_engine, register_worker
engine = open_engine(sys.argv[1])
worker = register_worker(engine, "bench")
rng = random.Random(0)
while (job := claim(engine, worker, lease_seconds=600)) is not None:
    rows = [MetricRow(split, name, epoch * 10, rng.random(), epoch=epoch)
            for epoch in (1, 2, 3) for split in ("eval", "select")
            for name in ("accuracy", "macro_f1")]
    finish(engine, job, rows)
"""


def finish_all(db: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", FINISH_ALL, db], env=env, check=True)


def measure(runs: int, src: str | None) -> dict[str, dict[str, float]]:
    env = environment(src)
    where = subprocess.run(
        [sys.executable, "-c", "import lorabench; print(lorabench.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"code: {where}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        queued, finished = build_databases(folder, env)
        cases = {
            "--help": ["--help"],
            "status (10,000 jobs)": ["status", "--db", queued],
            "plan --preset paper-glue --dry-run": ["plan", "--preset", "paper-glue",
                                                   "--dry-run", "--db", queued],
            "report --table lr (2,000 done jobs)": ["report", "--table", "lr", "--db", finished,
                                                    "--out", str(folder / "reports")],
        }  # fmt: skip
        results = {}
        for name, args in cases.items():
            walls, rss = [], []
            for _ in range(runs):
                wall, peak, _ = lorabench(args, env, folder)
                walls.append(wall)
                rss.append(peak)
            results[name] = {"seconds": statistics.median(walls), "rss_mb": statistics.median(rss)}
            print(f"{name:40s} {results[name]['seconds']:7.3f} s  "
                  f"{results[name]['rss_mb']:7.1f} MB", file=sys.stderr)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--src", help="another checkout to measure (put first on PYTHONPATH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.runs, args.src)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"| command | median wall (s), {args.runs} runs | median peak RSS (MB) | target |")
    print("|---|---|---|---|")
    for name, result in results.items():
        seconds, megabytes = TARGETS[name]
        target = f"≤ {seconds} s" + (f", ≤ {megabytes:.0f} MB" if megabytes else "")
        print(f"| `{name}` | {result['seconds']:.3f} | {result['rss_mb']:.0f} | {target} |")


if __name__ == "__main__":
    main()
