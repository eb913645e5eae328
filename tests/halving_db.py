"""Halving brackets written by hand through the store's API, as a worker would: claim a job,
report a rung (`pause`), fail it, or finish it at the last rung with its metrics. The queue
decides promotions itself (store.halving), so the states are the real ones."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from lorabench.api import plan
from lorabench.store import (
    MetricRow,
    RungRow,
    claim,
    fail,
    finish,
    open_engine,
    pause,
    register_worker,
)
from lorabench.store.models import Job

# noop: 8 examples, batch 8: one step per epoch; 9 epochs, first rung 1 epoch, eta 3: rungs end
# at steps 1, 3 and 9 (the full job).
HALVING = {"method": "halving", "eta": 3, "min_budget": 1, "unit": "epochs"}
FULL_STEPS = 9


class HalvingDB:
    def __init__(self, path: Path, lrs: list[float], seeds=(0,), name: str = "hs") -> None:  # noqa: ANN001
        self.path = str(path)
        plan({"task": "noop", "variant": "lora", "lr": lrs, "seed": list(seeds), "epochs": 9,
              "search": HALVING, "name": name}, db=self.path)  # fmt: skip
        self.engine = open_engine(self.path)
        self.worker = register_worker(self.engine, "cpu")
        self.ids = {}
        with self.engine.connect() as conn:
            for job_id, config in conn.execute(select(Job.id, Job.config)):
                c = json.loads(config)
                self.ids[(c["lr"], c["seed"])] = job_id

    def claim(self, lr: float, seed: int = 0):  # noqa: ANN201
        """Claim exactly this job (the others get a lower priority for the moment)."""
        job_id = self.ids[(lr, seed)]
        with self.engine.begin() as conn:
            conn.execute(Job.__table__.update().values(priority=1))
            conn.execute(Job.__table__.update().where(Job.id == job_id).values(priority=0))
        claimed = claim(self.engine, self.worker, lease_seconds=60)
        assert claimed is not None and claimed.job_id == job_id
        return claimed

    def rung(self, lr: float, seed: int, score: float, test_score: float) -> str:
        """The job trains its rung and reports it; returns its state after the decision."""
        return self.report(self.claim(lr, seed), score, test_score)

    def report(self, claimed, score: float, test_score: float) -> str:  # noqa: ANN001
        """A claimed job reports its rung (`pause`)."""
        step = (1, 3, 9)[claimed.rung]
        return pause(self.engine, claimed, [], RungRow(step, score, test_score))

    def finish(self, lr: float, seed: int, epochs: list[tuple[float, float]]) -> None:
        """The job trains its last rung and finishes; `epochs`: (select, test) score per epoch."""
        claimed = self.claim(lr, seed)
        metrics = [MetricRow("summary", "total_steps", 0, float(FULL_STEPS))]
        for epoch, (held, test) in enumerate(epochs, start=1):
            metrics += [MetricRow("select", "score", epoch, held, epoch),
                        MetricRow("eval", "score", epoch, test, epoch)]  # fmt: skip
        last = RungRow(FULL_STEPS, epochs[-1][0], epochs[-1][1])
        finish(self.engine, claimed, metrics, rung=last)

    def fail(self, lr: float, seed: int = 0) -> str:
        return fail(self.engine, self.claim(lr, seed), "boom", transient=False)

    def close(self) -> None:
        self.engine.dispose()


def finished_bracket(path: Path) -> HalvingDB:
    """Four learning rates x two seeds. Rung 0: 1e-2 (select mean 0.85) beats 1e-3 (0.6) and
    1e-1 (0.2); both seeds of 1.0 fail before reporting. With eta 3 the best of three goes on,
    the other two stop at rung 0; 1e-2 alone reports rung 1, goes on, and finishes."""
    db = HalvingDB(path, [1e-3, 1e-2, 1e-1, 1.0], seeds=(0, 1))
    assert db.fail(1.0, 0) == db.fail(1.0, 1) == "failed"
    states = [db.rung(1e-3, 0, 0.5, 0.4), db.rung(1e-3, 1, 0.7, 0.6),
              db.rung(1e-2, 0, 0.8, 0.7), db.rung(1e-2, 1, 0.9, 0.8),
              db.rung(1e-1, 0, 0.1, 0.2), db.rung(1e-1, 1, 0.3, 0.4)]  # fmt: skip
    assert states == ["paused"] * 5 + ["stopped"]
    assert [db.rung(1e-2, s, 0.9, 0.8) for s in (0, 1)] == ["paused", "queued"]
    # Seed 0 is best at epoch 2 on the select split (test 0.75), seed 1 at epoch 1 (0.85).
    db.finish(1e-2, 0, [(0.8, 0.7), (0.9, 0.75)])
    db.finish(1e-2, 1, [(0.95, 0.85), (0.9, 0.95)])
    return db
