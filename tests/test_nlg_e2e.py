"""gsm8k-mini end to end: plan, work (a real LoRA, real generation), metrics in the database."""

import json
from pathlib import Path

import pytest
from helpers import plan_and_work
from sqlalchemy import select

from lorabench.store import open_engine
from lorabench.store.models import Job, Metric
from lorabench.tasks.gsm8k import accuracy


@pytest.mark.slow
def test_gsm8k_mini_trains_and_scores_generated_answers(tmp_path: Path):
    db, dump = str(tmp_path / "nlg.db"), tmp_path / "generations.jsonl"
    params = (
        f'task_params={{max_new_tokens = 12, eval_batch_size = 4, dump_generations = "{dump}"}}'
    )
    plan_and_work(
        db, tmp_path, "--task", "gsm8k-mini", "--variant", "lora", "--lr", "1e-3",
        "--batch-size", "4", "--max-length", "160", "--train-size", "8", "--eval-size", "6",
        "--max-steps", "2", "--set", params,
    )  # fmt: skip
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        [(state, error)] = conn.execute(select(Job.state, Job.error)).all()
        metrics = {
            (split, name): value
            for split, name, value in conn.execute(select(Metric.split, Metric.name, Metric.value))
        }
        losses = conn.execute(
            select(Metric.value).where(Metric.split == "train", Metric.name == "loss")
        ).all()
    assert state == "done", error
    assert len(losses) == 2
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    # Each epoch scores the select split (held-out training problems) first, then test.
    assert [r["split"] for r in lines] == ["select"] * 7 + ["test"] * 7
    assert set(metrics) >= {("select", "accuracy_strict"), ("select", "accuracy_flexible")}
    rows, summary = lines[7:-1], lines[-1]
    assert len(rows) == 6 and all(r["completion"].strip() for r in rows)
    completions, golds = [r["completion"] for r in rows], [r["gold"] for r in rows]
    # The database holds the scores of these very generations, extracted again here.
    assert metrics[("eval", "accuracy_strict")] == accuracy(completions, golds, "strict")
    assert metrics[("eval", "accuracy_flexible")] == accuracy(completions, golds, "flexible")
    assert summary["scores"] == {
        "accuracy_strict": metrics[("eval", "accuracy_strict")],
        "accuracy_flexible": metrics[("eval", "accuracy_flexible")],
    }
    assert metrics[("summary", "best_accuracy_strict")] == metrics[("eval", "accuracy_strict")]
