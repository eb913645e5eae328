"""Queue throughput: P worker processes claim and finish N jobs on one database.

Each process loops claim -> finish (one metric row) until the queue is empty, so this measures
the queue's own overhead. It also checks the queue's promise: every job done exactly once.

    python benchmarks/queue_throughput.py --workers 4 --jobs 500 [--db URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(db: str, go_at: float) -> None:
    from lorabench.store import MetricRow, claim, finish, open_engine, register_worker

    engine = open_engine(db)
    worker = register_worker(engine, "bench")
    while time.time() < go_at:  # start together, after the imports
        time.sleep(0.005)
    started, done, errors = time.time(), [], []
    while True:
        try:
            job = claim(engine, worker, lease_seconds=600)
            if job is None:
                break
            finish(engine, job, [MetricRow("eval", "accuracy", 1, 1.0, epoch=1)])
            done.append(job.job_id)
        except Exception as error:  # noqa: BLE001  (reported, and fails the check)
            errors.append(repr(error))
    print(json.dumps({"started": started, "ended": time.time(), "done": done, "errors": errors}))


def run(db: str, workers: int, jobs: int) -> dict:
    from sqlalchemy import func, select

    from lorabench.config import resolve_job
    from lorabench.store import enqueue, open_engine
    from lorabench.store.models import Attempt, Job, Metric

    engine = open_engine(db, create=True)
    configs = [
        resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4, "seed": seed})
        for seed in range(jobs)
    ]
    enqueue(engine, "queue-benchmark", configs)
    go_at = time.time() + 8.0  # imports take a few seconds per process on 2 cores
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", "--db", db, "--go-at", str(go_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"worker process exited with {process.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    claimed = [job for r in reports for job in r["done"]]
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    with engine.connect() as conn:
        attempts = conn.execute(select(func.count()).select_from(Attempt)).scalar_one()
        metrics = conn.execute(select(func.count()).select_from(Metric)).scalar_one()
        done = conn.execute(
            select(func.count()).select_from(Job).where(Job.state == "done")
        ).scalar_one()
    return {
        "workers": workers,
        "jobs": jobs,
        "claimed": len(claimed),
        "distinct_claimed": len(set(claimed)),
        "done": done,
        "attempts": attempts,
        "metric_rows": metrics,
        "errors": [e for r in reports for e in r["errors"]],
        "seconds": seconds,
        "claims_per_second": len(claimed) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--db", default=None, help="database URL or path (default: a temp file)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--go-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.db, args.go_at)
        return
    with tempfile.TemporaryDirectory() as folder:
        db = args.db or str(Path(folder) / "bench.db")
        result = run(db, args.workers, args.jobs)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['workers']} workers, {result['jobs']} jobs: "
            f"{result['claims_per_second']:.0f} claim+finish/s ({result['seconds']:.2f} s); "
            f"done {result['done']}, "
            f"attempts {result['attempts']}, errors {len(result['errors'])}"
        )


if __name__ == "__main__":
    main()
