"""Successive halving: where the rungs are, the promotion rule, and the queue that applies it
(one transaction per decision, on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.api import plan
from lorabench.cli import app
from lorabench.config import ConfigError
from lorabench.search import SearchSpec, expected_fraction, rung_steps
from lorabench.store import (
    RungRow,
    StoreError,
    cancel,
    claim,
    fail,
    open_engine,
    pause,
    register_worker,
    retry,
)
from lorabench.store import finish as finish_job
from lorabench.store.models import Job, Metric, Rung

HALVING = {"method": "halving", "eta": 3, "min_budget": 1, "unit": "epochs"}


def halving(**changes: object) -> SearchSpec:
    return SearchSpec(**{**HALVING, **changes})


# --- rungs -------------------------------------------------------------------------------------


def test_rungs_grow_by_eta_from_min_budget_and_end_at_the_jobs_length():
    # 40 steps, 20 per epoch; in steps: 5, 15, then the whole job (45 would pass it).
    assert rung_steps(halving(min_budget=5, unit="steps"), total_steps=40, steps_per_epoch=20) == [
        5, 15, 40,
    ]  # fmt: skip
    # 10 epochs of 4 steps, first rung 1 epoch: epochs 1, 3, 9, then 10.
    assert rung_steps(halving(), total_steps=40, steps_per_epoch=4) == [4, 12, 36, 40]
    assert rung_steps(halving(eta=2, min_budget=2), total_steps=40, steps_per_epoch=4) == [
        8, 16, 32, 40,
    ]  # fmt: skip
    assert rung_steps(SearchSpec(), total_steps=40, steps_per_epoch=4) == [40]  # a grid
    assert rung_steps(halving(min_budget=40, unit="steps"), total_steps=40, steps_per_epoch=4) == [
        40
    ]


def test_expected_fraction_by_hand():
    # 7 arms, rungs 5/15/40 steps of 40: 7 x 5 + 2 x 10 + 1 x 25 = 80 of 7 x 40 = 280.
    search = halving(min_budget=5, unit="steps")
    assert expected_fraction(search, 7, total_steps=40, per_epoch=20) == pytest.approx(80 / 280)
    # 9 arms, eta 3, rungs 1/3/9 epochs: 9 x 1 + 3 x 2 + 1 x 6 = 21 of 81.
    assert expected_fraction(halving(), 9, total_steps=9, per_epoch=1) == pytest.approx(21 / 81)
    assert expected_fraction(SearchSpec(), 9, total_steps=9, per_epoch=1) == 1.0


def test_a_search_is_a_name_or_a_table_and_bad_values_are_refused():
    assert SearchSpec.model_validate("halving") == halving()
    assert SearchSpec.model_validate({"method": "halving", "eta": 2}).eta == 2
    for bad in ({"method": "halvin"}, {"method": "halving", "eta": 1},
                {"method": "halving", "min_budget": 0}, {"method": "halving", "unit": "hours"},
                {"method": "halving", "rungs": 3}):  # fmt: skip
        with pytest.raises(ValueError):
            SearchSpec.model_validate(bad)
    # Halving's options on a grid would be silently ignored: refused, naming what to add.
    for options, named in (({"eta": 3}, "eta applies"),
                           ({"method": "grid", "min_budget": 2, "unit": "steps"},
                            "min_budget and unit apply")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{named} only to successive halving: add --search"):
            SearchSpec.model_validate(options)
    assert SearchSpec.model_validate({"method": "grid"}) == SearchSpec()


# --- the rule, as a reference computed sequentially ----------------------------------------------


def reference(order: list[tuple[str, int]], scores: dict[tuple[str, int], float], eta: int,
              arms: list[str], top: int) -> tuple[dict[str, int], set[str]]:  # fmt: skip
    """ASHA written out plainly: results arrive in `order` as (arm, rung); after each, every
    arm in the top floor(n/eta) of rung k's n results that has not gone on goes on; when a
    rung can get no more results, the best goes on if none did, the rest stop; an arm that
    reports rung `top` is done. Returns the rung each arm reached and the arms stopped."""
    reached = {arm: 0 for arm in arms}
    stopped: set[str] = set()
    results: dict[int, dict[str, float]] = {}
    waiting: set[tuple[str, int]] = set()

    def rank(rung: int) -> list[str]:
        got = results.get(rung, {})
        return sorted(got, key=lambda a: (-got[a], float(a)))

    def decide() -> None:
        for k in sorted(results):
            ranked = rank(k)
            for arm in ranked[: len(ranked) // eta]:
                if (arm, k) in waiting:
                    waiting.discard((arm, k))
                    reached[arm] = k + 1
            can_come = [a for a in arms if a not in stopped and reached[a] <= k
                        and a not in results[k]]  # fmt: skip
            if can_come or k == top:
                continue
            if not any(reached[a] > k for a in ranked):
                best = next(a for a in ranked if (a, k) in waiting)
                waiting.discard((best, k))
                reached[best] = k + 1
            for arm in ranked:
                if (arm, k) in waiting:
                    waiting.discard((arm, k))
                    stopped.add(arm)

    for arm, rung in order:
        results.setdefault(rung, {})[arm] = scores[(arm, rung)]
        if rung < top:
            waiting.add((arm, rung))
        decide()
    return reached, stopped


def plan_bracket(db: str, lrs: list[float], *, seeds=(0,), eta: int = 3, epochs: int = 9,
                 name: str = "hs") -> None:  # fmt: skip
    planned = plan({"task": "noop", "variant": "lora", "lr": lrs, "seed": list(seeds),
                    "epochs": epochs, "search": {**HALVING, "eta": eta}, "name": name},
                   db=db)  # fmt: skip
    assert planned.new == len(lrs) * len(seeds)


def run_in_order(db: str, score: dict[tuple[str, int], float], top: int, *,
                 rng: random.Random | None = None) -> list[tuple[str, int]]:  # fmt: skip
    """Claim and report rungs, picking the next claimable job at random when `rng` is given;
    a job reaching rung `top` finishes. Returns the order rungs were reported in."""
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    order = []
    while True:
        with engine.connect() as conn:
            queued = conn.execute(select(Job.id).where(Job.state == "queued")).scalars().all()
        if not queued:
            break
        job_id = rng.choice(queued) if rng else min(queued)
        claimed = claim_job(engine, worker, job_id)
        arm = json.dumps(claimed.config["lr"])
        rung = RungRow(step=claimed.rung + 1, score=score[(arm, claimed.rung)])
        order.append((arm, claimed.rung))
        if claimed.rung == top:
            finish_job(engine, claimed, [], rung=rung)
        else:
            pause(engine, claimed, [], rung)
    engine.dispose()
    return order


def claim_job(engine, worker: int, job_id: int):  # noqa: ANN001, ANN201
    """Claim exactly `job_id` (the others are given a lower priority for the moment)."""
    with engine.begin() as conn:
        conn.execute(Job.__table__.update().values(priority=1))
        conn.execute(Job.__table__.update().where(Job.id == job_id).values(priority=0))
    claimed = claim(engine, worker, lease_seconds=60)
    assert claimed is not None and claimed.job_id == job_id
    return claimed


def final_states(db: str) -> dict[str, tuple[int, str]]:
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(Job.config, Job.rung, Job.state)).all()
    engine.dispose()
    return {json.dumps(json.loads(c)["lr"]): (rung, state) for c, rung, state in rows}


def test_a_bracket_in_order_promotes_as_the_paper_rule_says(tmp_path: Path):
    # 9 learning rates, eta 3, rungs at epochs 1, 3, 9: the best 3 go on, then the best 1.
    db = str(tmp_path / "h.db")
    lrs = [10.0**-k for k in range(1, 10)]
    plan_bracket(db, lrs)
    arms = [json.dumps(lr) for lr in lrs]
    score = {(arm, k): (i % 5) + k / 10 for i, arm in enumerate(arms) for k in range(3)}
    order = run_in_order(db, score, top=2)
    reached, stopped = reference(order, score, 3, arms, 2)
    states = final_states(db)
    assert {arm: rung for arm, (rung, _) in states.items()} == reached
    assert {arm for arm, (_, state) in states.items() if state == "stopped"} == stopped
    assert [arm for arm, (_, state) in states.items() if state == "done"] == ["1e-05"]
    # Each arm reported each rung it reached once; every arm trained rung 0.
    assert sorted(order) == sorted(set(order))
    assert sum(1 for _, k in order if k == 0) == 9


@pytest.mark.parametrize("trial", range(12))
def test_any_arrival_order_gives_what_the_sequential_rule_gives(tmp_path: Path, trial: int):
    rng = random.Random(trial)
    eta = rng.choice([2, 3, 4])
    lrs = sorted({round(10 ** rng.uniform(-6, -1), 8) for _ in range(rng.randint(2, 11))})
    db = str(tmp_path / "h.db")
    plan_bracket(db, lrs, eta=eta, epochs=eta**2 + 1)  # rungs 1, eta, eta^2, full: top 3
    arms = [json.dumps(lr) for lr in lrs]
    score = {(arm, k): rng.choice([rng.random(), 0.5]) for arm in arms for k in range(4)}
    order = run_in_order(db, score, top=3, rng=rng)
    reached, stopped = reference(order, score, eta, arms, 3)
    states = final_states(db)
    assert {arm: rung for arm, (rung, _) in states.items()} == reached
    assert {arm for arm, (_, s) in states.items() if s == "stopped"} == stopped
    assert sum(s == "done" for _, s in states.values()) >= 1
    assert all(s in ("done", "stopped") for _, s in states.values())


def jobs_by_lr_and_seed(engine) -> dict[tuple[float, int], int]:  # noqa: ANN001
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.config)).all()
    return {(json.loads(c)["lr"], json.loads(c)["seed"]): job_id for job_id, c in rows}


def test_seeds_of_a_learning_rate_go_on_together_by_their_mean(tmp_path: Path):
    db = str(tmp_path / "h.db")
    plan_bracket(db, [1e-3, 1e-2, 1e-1], seeds=(0, 1), eta=2, epochs=3)  # rungs 1, 2, 3 epochs
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    by_job = jobs_by_lr_and_seed(engine)
    # lr 1e-2 has the best seed (0.9) but the worse mean (0.9 + 0.1); 1e-3 the best mean.
    rung0 = {(1e-3, 0): 0.6, (1e-3, 1): 0.6, (1e-2, 0): 0.9, (1e-2, 1): 0.1,
             (1e-1, 0): 0.2, (1e-1, 1): 0.2}  # fmt: skip
    states = []
    for (lr, seed), value in rung0.items():
        claimed = claim_job(engine, worker, by_job[(lr, seed)])
        states.append(pause(engine, claimed, [], RungRow(step=1, score=value)))
    # An arm counts once all its seeds reported: 1e-2's second seed ends its wait, but with
    # two arms in, floor(2/2) = 1: 1e-3 (mean 0.6) goes on; 1e-1 then completes the rung.
    assert states == ["paused", "paused", "paused", "paused", "paused", "stopped"]
    with engine.connect() as conn:
        rows = dict(conn.execute(select(Job.id, Job.state)).all())
    assert rows[by_job[(1e-3, 0)]] == rows[by_job[(1e-3, 1)]] == "queued"
    assert {rows[by_job[(lr, s)]] for lr in (1e-2, 1e-1) for s in (0, 1)} == {"stopped"}
    engine.dispose()


def test_an_arm_waits_while_a_seed_runs_and_a_failed_seed_drops_out(tmp_path: Path):
    db = str(tmp_path / "h.db")
    plan_bracket(db, [1e-3, 1e-2], seeds=(0, 1), eta=2, epochs=3)
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    ids = jobs_by_lr_and_seed(engine)
    for key, value in (((1e-3, 0), 0.9), ((1e-2, 0), 0.1), ((1e-2, 1), 0.1)):
        assert pause(engine, claim_job(engine, worker, ids[key]), [],
                     RungRow(1, value)) == "paused"  # fmt: skip
    # 1e-3's other seed fails for good: its arm is scored by the seed it has, and wins.
    claimed = claim_job(engine, worker, ids[(1e-3, 1)])
    assert fail(engine, claimed, "boom", transient=False) == "failed"
    with engine.connect() as conn:
        rows = {job_id: (state, rung) for job_id, state, rung in
                conn.execute(select(Job.id, Job.state, Job.rung))}  # fmt: skip
    assert rows[ids[(1e-3, 0)]] == ("queued", 1)
    assert rows[ids[(1e-3, 1)]] == ("failed", 0)
    assert rows[ids[(1e-2, 0)]] == rows[ids[(1e-2, 1)]] == ("stopped", 0)
    engine.dispose()


def test_cancel_and_retry_in_a_bracket(tmp_path: Path):
    db = str(tmp_path / "h.db")
    plan_bracket(db, [1e-3, 1e-2, 1e-1], eta=3, epochs=3)  # rungs 1, 3 epochs
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    first = claim(engine, worker, lease_seconds=60)
    assert pause(engine, first, [], RungRow(1, 0.5)) == "paused"
    second = claim(engine, worker, lease_seconds=60)
    assert pause(engine, second, [], RungRow(1, 0.7)) == "paused"
    # The third is cancelled before it runs: rung 0 is complete with two results,
    # floor(2/3) = 0 went on, so the best of them does and the other stops.
    assert cancel(engine, job_ids=[3]) == (1, 0)
    with engine.connect() as conn:
        states = dict(conn.execute(select(Job.id, Job.state)).all())
    assert states == {1: "stopped", 2: "queued", 3: "cancelled"}
    # Cancelling the promoted one (queued) and a stopped one: the stopped stays stopped.
    assert cancel(engine, job_ids=[1, 2]) == (1, 0)
    # Retry brings the cancelled back where they were; the queue runs them from there.
    assert retry(engine, job_ids=[2, 3]) == 2
    with engine.connect() as conn:
        rows = {i: (s, r) for i, s, r in conn.execute(select(Job.id, Job.state, Job.rung))}
    assert rows == {1: ("stopped", 0), 2: ("queued", 1), 3: ("queued", 0)}
    engine.dispose()


def test_replanning_adds_nothing_and_a_sweep_keeps_its_search(tmp_path: Path):
    db = str(tmp_path / "h.db")
    plan_bracket(db, [1e-3, 1e-2])
    again = plan({"task": "noop", "variant": "lora", "lr": [1e-3, 1e-2], "epochs": 9,
                  "search": HALVING, "name": "hs"}, db=db)  # fmt: skip
    assert (again.new, again.existing) == (0, 2)
    with pytest.raises(StoreError, match="planned with search halving .* not grid"):
        plan({"task": "noop", "variant": "lora", "lr": [1e-4], "epochs": 9, "name": "hs"}, db=db)
    with pytest.raises(ConfigError, match="needs select_split = true"):
        plan({"task": "noop", "variant": "lora", "lr": [1e-4], "search": "halving",
              "select_split": False}, db=db)  # fmt: skip
    with pytest.raises(ConfigError, match="min_budget 2 epoch.* is the whole job"):
        plan({"task": "noop", "variant": "lora", "lr": [1e-4], "epochs": 2,
              "search": {"method": "halving", "min_budget": 2}}, db=db)  # fmt: skip


def test_plan_flags_refine_a_sweep_files_search(tmp_path: Path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('task = "noop"\nvariant = "lora"\nlr = [1e-3, 1e-2]\nepochs = 9\n'
                     'search = {method = "halving", eta = 2}\n')  # fmt: skip
    db = str(tmp_path / "h.db")
    result = CliRunner().invoke(app, ["plan", str(sweep), "--min-budget", "2", "--db", db])
    assert result.exit_code == 0, result.output
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        (stored,) = conn.execute(select(Job.__table__.c.sweep_id)).scalars().unique().all()
        search = conn.exec_driver_sql("select search from sweep").scalar_one()
    engine.dispose()
    assert stored == 1
    assert json.loads(search) == {"method": "halving", "eta": 2, "min_budget": 2,
                                  "unit": "epochs"}  # fmt: skip
    bad = CliRunner().invoke(app, ["plan", str(sweep), "--eta", "1", "--db", db])
    assert bad.exit_code == 2 and "search.eta" in bad.output
    # --search grid replaces the file's halving table whole (its eta does not make it invalid).
    grid = CliRunner().invoke(app, ["plan", str(sweep), "--search", "grid", "--dry-run"])
    assert grid.exit_code == 0, grid.output
    assert "halving" not in grid.output
    # Halving's options without halving: refused, not ignored.
    lone = CliRunner().invoke(app, ["plan", "--task", "noop", "--variant", "lora", "--lr", "1e-3",
                                    "--eta", "2", "--db", db])  # fmt: skip
    assert lone.exit_code == 2
    assert "eta applies only to successive halving: add --search halving" in lone.output


# --- end to end on the noop task -----------------------------------------------------------------


def run_worker(db: str, tmp_path: Path) -> None:
    from lorabench.api import run_worker as run

    run(db=db, gpu="cpu", runs_dir=tmp_path / "runs", heartbeat_seconds=5.0, lease_seconds=60.0)


def test_the_learning_rate_that_wins_every_rung_is_the_grids_run_step_for_step(tmp_path: Path):
    lrs = [1e-3, 3e-2, 1.0]
    sweep = {"task": "noop", "variant": "lora", "lr": lrs, "epochs": 9}
    grid_db, halving_db = str(tmp_path / "grid.db"), str(tmp_path / "halving.db")
    plan(sweep, db=grid_db)
    plan({**sweep, "search": HALVING}, db=halving_db)
    run_worker(grid_db, tmp_path / "g")
    run_worker(halving_db, tmp_path / "h")

    def metrics(db: str) -> dict[float, dict[tuple[str, str, int], float]]:
        engine = open_engine(db, read_only=True)
        with engine.connect() as conn:
            rows = conn.execute(
                select(Job.config, Metric.split, Metric.name, Metric.step, Metric.value)
                .join(Metric, Metric.job_id == Job.id)
                .where(Job.state == "done", Metric.split != "summary")
            ).all()
        engine.dispose()
        found: dict[float, dict] = {}
        for config, split, name, step, value in rows:
            found.setdefault(json.loads(config)["lr"], {})[(split, name, step)] = value
        return found

    grid, searched = metrics(grid_db), metrics(halving_db)
    (winner,) = searched  # one learning rate trained in full
    assert set(grid) == set(lrs)
    assert searched[winner].keys() == grid[winner].keys()  # every step, every epoch, once
    for key, value in grid[winner].items():
        assert searched[winner][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    engine = open_engine(halving_db, read_only=True)
    with engine.connect() as conn:
        states = sorted(conn.execute(select(Job.state)).scalars())
        rungs = conn.execute(select(Rung.job_id, Rung.rung)).all()
    engine.dispose()
    assert states == ["done", "stopped", "stopped"]
    # `results` holds the stopped ones' curves up to their rung, and no best epoch for them.
    from lorabench.api import load_results

    frame = load_results(halving_db)
    stopped = frame[frame.state == "stopped"]
    assert sorted(stopped.groupby("lr")["step"].max().tolist()) == [1, 1]  # rung 0: 1 step
    assert stopped["best_epoch"].isna().all() and not (stopped.split == "summary").any()
    assert len(rungs) == len(set(rungs))  # each rung reported once per job
    # 3 arms, eta 3, rungs 1/3/9 epochs: 3 x 1 + 1 x 2 + 1 x 6 = 11 of 27 epochs trained.
    assert len(rungs) == 3 + 1 + 1
