"""Every registered variant trains on the embedded task through plan and work."""

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.store import open_engine
from lorabench.store.models import Job, Metric
from lorabench.variants import variant_names

# Settings that differ from the shared ones, each for a reason that is itself a finding:
# NZLoRA's gamma = 16 is sized for 4096-wide models; on the 384-wide embedded encoder its random
# initial update drowns the pretrained features and 12 steps cannot recover (kept as the
# default); LoRA+ trains B at 16x the rate, CorDA puts W's principal components in the adapter
# and LoRA-GA starts from gradient-aligned factors: all three are effectively faster, diverge at
# the shared 5e-3 and learn at 1e-3 (the paper's point that such variants shift the best lr).
# GOAT's derived scale sqrt(3 in / r_i) is ~34 here, so 5e-3 overshoots too; there its top-k
# routing turns thread-count rounding into different curves (rising with 2 threads, seed 0).
OVERRIDES = {
    "nzlora": ["--set", "variant_params={gamma_a = 1.0, gamma_b = 1.0}"],
    "lora-plus": ["--lr", "1e-3"],
    "corda": ["--lr", "1e-3"],
    "lora-ga": ["--lr", "1e-3"],
    "goat": ["--lr", "1e-3"],
}
# The paper's protocol (no select split): the 48 training documents these curves were checked
# on; 12 steps on 48 documents are too few to survive a different draw for every variant.
SETTINGS = ["--task", "bbc-news", "--batch-size", "8", "--max-length", "32",
            "--train-size", "48", "--eval-size", "16", "--epochs", "2",
            "--select-split", "false"]  # fmt: skip


@pytest.mark.slow
def test_every_variant_trains_and_its_loss_falls(tmp_path: Path):
    db = str(tmp_path / "all.db")
    plain = [v for v in variant_names() if v not in OVERRIDES]
    plans = [["--variant", ",".join(plain), "--lr", "5e-3"]]
    plans += [["--variant", v, *(["--lr", "5e-3"] if "--lr" not in extra else []), *extra]
              for v, extra in OVERRIDES.items()]  # fmt: skip
    for variant_args in plans:
        plan = CliRunner().invoke(app, ["plan", "--db", db, *SETTINGS, *variant_args])
        assert plan.exit_code == 0, plan.output
    work = CliRunner().invoke(app, [
        "work", "--db", db, "--gpu", "cpu", "--exit-when-empty", "--runs-dir", str(tmp_path),
    ])  # fmt: skip
    assert work.exit_code == 0, work.output
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        jobs = conn.execute(select(Job.id, Job.config, Job.state, Job.error)).all()
        losses: dict[int, list[float]] = {}
        for job_id, value in conn.execute(
            select(Metric.job_id, Metric.value)
            .where(Metric.split == "train", Metric.name == "loss")
            .order_by(Metric.job_id, Metric.step)
        ):
            losses.setdefault(job_id, []).append(value)
    failed = {json.loads(c)["variant"]: e for _, c, s, e in jobs if s != "done"}
    assert not failed, failed
    not_falling = {}
    for job_id, config, _, _ in jobs:
        curve = losses[job_id]
        assert len(curve) == 12
        first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
        if not last < first:
            not_falling[json.loads(config)["variant"]] = (round(first, 3), round(last, 3))
    assert not not_falling, not_falling
