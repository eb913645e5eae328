"""Queue throughput: P worker processes claim and finish N jobs on one database.

Each process loops claim -> finish (one metric row) until the queue is empty, so this measures
the queue's own overhead. It also checks the queue's promise: every job done exactly once.

    python benchmarks/queue_throughput.py --backend both --workers 1,4,8 --jobs 1000 [--json]
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

    from lorabench.cli.plan import job_rows
    from lorabench.config import resolve_job
    from lorabench.store import enqueue, open_engine
    from lorabench.store.models import Attempt, Job, Metric

    engine = open_engine(db, create=True)
    configs = [
        resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4, "seed": seed})
        for seed in range(jobs)
    ]
    enqueue(engine, "queue-benchmark", job_rows(configs))
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


def overhead_percent(result: dict, job_seconds: float = 60.0) -> float:
    """Each worker's share of queue time per job (claim + finish), as % of a job's length."""
    seconds_per_job_per_worker = result["workers"] / result["claims_per_second"]
    return 100 * seconds_per_job_per_worker / job_seconds


def on_backend(backend: str, folder: Path, server) -> str:  # noqa: ANN001
    if backend == "sqlite":
        return str(folder / f"bench-{time.monotonic_ns()}.db")
    return server.new_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,8", help="comma-separated process counts")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgresql or both")
    parser.add_argument("--db", default=None, help="an existing database URL instead")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--go-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.db, args.go_at)
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    server = None
    if "postgresql" in backends and args.db is None:
        # A throwaway cluster, as the tests start one (needs the distribution's postgresql).
        sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
        import pg_server

        server = pg_server.start_server()
    results = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for backend in backends:
                for workers in [int(w) for w in args.workers.split(",")]:
                    db = args.db or on_backend(backend, Path(folder), server)
                    result = run(db, workers, args.jobs)
                    overhead = overhead_percent(result)
                    results.append(
                        {"backend": backend, **result, "overhead_percent_of_60s_job": overhead}
                    )
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(results))
        return
    print("| backend | workers | claim+finish/s | queue % of a 60 s job | done | attempts | "
          "errors |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['backend']} | {r['workers']} | {r['claims_per_second']:.0f} | "
            f"{r['overhead_percent_of_60s_job']:.4f} | {r['done']} | {r['attempts']} | "
            f"{len(r['errors'])} |"
        )


if __name__ == "__main__":
    main()
