"""`lorabench quickstart --full`: its plan, the lr-vs-variant finding, and the command end to end
with a fake worker (the real sweep takes ~30 min and is not run here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.api import Planned, plan
from lorabench.cli import app
from lorabench.cli.quickstart import FULL_SWEEP, QUICKSTART_SWEEP
from lorabench.report.finding import lr_vs_variant, render_finding
from lorabench.store import MetricRow, claim, finish, open_engine, register_worker
from lorabench.store.models import Job

runner = CliRunner()
VARIANTS = ["lora", "dora", "pissa", "lora-plus", "lora-ga"]
LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
# Every variant peaks at 1e-3 and falls 0.70 to its worst lr; variants differ by <= 0.04.
LR_SCORE = {1e-5: 0.30, 3e-5: 0.40, 1e-4: 0.60, 3e-4: 0.80, 1e-3: 0.90, 3e-3: 0.70, 1e-2: 0.20}
OFFSET = {"lora": 0.0, "dora": 0.01, "pissa": 0.02, "lora-plus": -0.01, "lora-ga": 0.03}


def test_full_sweep_is_five_variants_by_seven_lrs_at_quick_mode_settings():
    assert FULL_SWEEP["variant"] == VARIANTS
    assert FULL_SWEEP["lr"] == LRS
    same = ("task", "seed", "epochs", "max_length", "train_size", "eval_size")
    assert {k: FULL_SWEEP[k] for k in same} == {k: QUICKSTART_SWEEP[k] for k in same}
    assert QUICKSTART_SWEEP["name"] == "quickstart"  # quick mode is untouched
    assert QUICKSTART_SWEEP["variant"] == ["lora", "rslora"]


def test_full_sweep_plans_35_jobs_with_the_quick_settings(tmp_path: Path):
    dry = plan(FULL_SWEEP, db=str(tmp_path / "x.db"), dry_run=True)
    assert (dry.sweep, dry.jobs, dry.new, dry.dry_run) == ("quickstart-full", 35, 0, True)
    db = str(tmp_path / "q.db")
    assert plan(FULL_SWEEP, db=db) == Planned(sweep="quickstart-full", jobs=35, new=35,
                                              existing=0)  # fmt: skip
    # Re-running quickstart re-plans: nothing is added, so the worker resumes what is left.
    assert plan(FULL_SWEEP, db=db).existing == 35
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        configs = [json.loads(c) for c in conn.execute(select(Job.config)).scalars()]
    engine.dispose()
    assert sorted((c["variant"], c["lr"]) for c in configs) == sorted(
        (v, lr) for v in VARIANTS for lr in LRS
    )
    for c in configs:
        assert (c["task"], c["seed"], c["epochs"]) == ("bbc-news", 0, 2)
        assert (c["max_length"], c["train_size"], c["eval_size"]) == (64, 320, 300)


def hand_grid() -> pd.DataFrame:
    # Hand-made: lora best at 1e-4 (0.80), worst 0.10; dora best 0.85 at 1e-3, worst 0.50;
    # pissa has a missing cell and ties at its best (0.70 at 1e-4 and 1e-3: smallest lr wins).
    return pd.DataFrame(
        {1e-3: [0.60, 0.85, 0.70], 1e-5: [0.10, 0.50, math.nan], 1e-4: [0.80, 0.55, 0.70]},
        index=pd.Index(["lora", "dora", "pissa"], name="variant"),
    )


def test_finding_on_a_hand_made_grid():
    found = lr_vs_variant(hand_grid())
    assert found.best_lr == {"lora": 1e-4, "dora": 1e-3, "pissa": 1e-4}
    assert found.best_score == {"lora": 0.80, "dora": 0.85, "pissa": 0.70}
    assert found.lr_spread == pytest.approx({"lora": 0.70, "dora": 0.35, "pissa": 0.0})
    assert found.lr_spread_overall == pytest.approx(0.85 - 0.10)
    assert found.variant_spread_at_best == pytest.approx(0.85 - 0.70)
    assert (found.reference, found.reference_lr) == ("lora", 1e-4)
    assert found.variant_spread_at_reference == pytest.approx(0.80 - 0.55)
    # pissa never moves with the lr, so the lr does not beat the variant everywhere.
    assert not found.lr_matters_more


def test_finding_without_the_reference_variant_and_with_empty_rows():
    grid = hand_grid().drop(index="pissa")
    grid.loc["vera"] = math.nan
    found = lr_vs_variant(grid, reference="rslora")
    assert set(found.best_score) == {"lora", "dora"}
    assert math.isnan(found.reference_lr) and math.isnan(found.variant_spread_at_reference)
    assert found.lr_matters_more  # 0.35 and 0.70 over lrs vs 0.05 over variants
    with pytest.raises(ValueError, match="every cell is missing"):
        lr_vs_variant(pd.DataFrame(math.nan, index=["lora"], columns=[1e-4]))


def test_render_finding_table_and_sentence():
    table, sentence = render_finding(lr_vs_variant(hand_grid()), metric="accuracy")
    assert [c.header for c in table.columns] == [
        "variant", "best lr", "best score", "spread over lrs",
    ]  # fmt: skip
    assert list(table.columns[0].cells) == ["lora", "dora", "pissa", "all variants"]
    assert list(table.columns[1].cells) == ["1e-04", "1e-03", "1e-04", ""]
    assert list(table.columns[3].cells) == ["70.00", "35.00", "0.00", "75.00"]
    assert sentence == (
        "Across learning rates each variant's accuracy moves by 0.00-70.00 points (75.00 over "
        "the whole grid); across variants, each at its best lr, it moves by 15.00 points (25.00 "
        "at lora's best lr 1e-04): here the variant matters as much as the learning rate."
    )


def fake_worker(*, db: str, sweep: str, **_: object) -> None:
    """Finish every queued job of the sweep with a known score per (variant, lr)."""
    engine = open_engine(db)
    worker = register_worker(engine, "cpu")
    while (job := claim(engine, worker, lease_seconds=60, sweep=sweep)) is not None:
        variant, lr = job.config["variant"], job.config["lr"]
        score = round(LR_SCORE[lr] + OFFSET[variant], 4)
        finish(engine, job, [
            MetricRow("eval", "accuracy", 10, score - 0.05, epoch=1),
            MetricRow("eval", "accuracy", 20, score, epoch=2),
        ])  # fmt: skip
    engine.dispose()


def test_quickstart_full_end_to_end_with_a_fake_worker(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("lorabench.api.run_worker", fake_worker)
    db, out = str(tmp_path / "q.db"), tmp_path / "reports"
    args = ["quickstart", "--full", "--db", db, "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "planned sweep quickstart-full: 35 new job(s), 0 already present" in result.output
    assert {p.name for p in out.iterdir()} == {
        "lr-table-bbc-news.md", "lr-table-bbc-news.csv", "lr-sweep.png",
    }  # fmt: skip
    text = " ".join(result.output.split())
    assert (
        "Across learning rates each variant's accuracy moves by 70.00-70.00 points (74.00 over "
        "the whole grid); across variants, each at its best lr, it moves by 4.00 points (4.00 at "
        "lora's best lr 1e-03): the learning rate matters more than the variant."
    ) in text
    # Interrupted or finished, a second run adds nothing and reports again.
    again = runner.invoke(app, args, terminal_width=300)
    assert again.exit_code == 0, again.output
    assert "0 new job(s), 35 already present" in again.output


def test_quickstart_passes_its_trackers_to_the_worker_and_refuses_a_typo_before_planning(
    tmp_path: Path, monkeypatch
):
    seen: list[dict] = []

    def recording_worker(**options: object) -> None:
        seen.append({k: options.get(k) for k in ("sweep", "log", "log_dir")})
        fake_worker(**options)

    monkeypatch.setattr("lorabench.api.run_worker", recording_worker)
    db, logs = tmp_path / "q.db", tmp_path / "logs"
    typo = runner.invoke(app, ["quickstart", "--db", str(db), "--log", "tensorbord"])
    assert typo.exit_code == 2
    assert "did you mean 'tensorboard'?" in typo.output
    assert (seen, db.exists()) == ([], False)  # refused before anything was planned or run
    args = ["quickstart", "--full", "--db", str(db), "--out", str(tmp_path / "r"),
            "--log", "tensorboard", "--log", "mlflow", "--log-dir", str(logs)]  # fmt: skip
    result = runner.invoke(app, args, terminal_width=300)
    assert result.exit_code == 0, result.output
    assert seen == [{"sweep": "quickstart-full", "log": ("tensorboard", "mlflow"), "log_dir": logs}]
    seen.clear()
    plain = runner.invoke(app, args[:6], terminal_width=300)  # no --log: the sweep decides
    assert plain.exit_code == 0, plain.output
    assert seen == [{"sweep": "quickstart-full", "log": None, "log_dir": None}]
