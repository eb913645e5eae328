"""A stand-in worker for the halving queue tests: claims jobs, reports each rung with a score
that depends only on (config, rung), and finishes at the top rung; no training.

    python tests/halving_worker.py DB TOP [--die-in-settle]

--die-in-settle: SIGKILL itself inside the first decision that promotes or stops an arm,
before its transaction commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time

from lorabench.store import RungRow, claim, finish, open_engine, pause, register_worker
from lorabench.store import queue as store_queue
from lorabench.store.models import Job


def score_of(config: dict, rung: int) -> float:
    """A fixed pseudo-random score per (lr, rank, seed, rung): the same in every process."""
    key = json.dumps([config["lr"], config["rank"], config["seed"], rung])
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def main(db: str, top: int, die_in_settle: bool) -> None:
    if die_in_settle:
        decide = store_queue.settle

        def settle_then_die(conn, bracket, now):  # noqa: ANN001, ANN202
            decision = decide(conn, bracket, now)
            if decision.promoted or decision.stopped:
                os.kill(os.getpid(), signal.SIGKILL)  # inside the transaction, uncommitted
            return decision

        store_queue.settle = settle_then_die
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    idle_since = None
    while True:
        claimed = claim(engine, worker, lease_seconds=30)
        if claimed is None:
            with engine.connect() as conn:
                busy = conn.execute(
                    Job.__table__.select().where(Job.state.in_(("queued", "running")))
                ).first()
            if busy is None:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 1.0:
                    break
            time.sleep(0.02)
            continue
        idle_since = None
        rung = RungRow(step=claimed.rung + 1, score=score_of(claimed.config, claimed.rung))
        if claimed.rung == top:
            finish(engine, claimed, [], rung=rung)
        else:
            pause(engine, claimed, [], rung)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--die-in-settle" in sys.argv[3:])
