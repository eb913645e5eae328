"""The training loop on the embedded task: metrics, resume equality, NaN handling."""

from pathlib import Path

import pytest
import torch

from lorabench.config import resolve_job
from lorabench.train import Interrupted, NonFiniteLoss, Schedule, train_job
from lorabench.train.checkpoint import CHECKPOINT_NAME, load_checkpoint


def tiny(**values):
    settings = {
        "task": "bbc-news", "variant": "lora", "lr": 1e-3, "epochs": 2, "batch_size": 8,
        "max_length": 32, "train_size": 40, "eval_size": 24, "rank": 4,
    }  # fmt: skip
    return resolve_job({**settings, **values})


def test_schedule_counts_steps_and_warmup():
    cfg = tiny(grad_accum=2)
    plan = Schedule.for_job(cfg, n_train=40)  # 5 micro-batches -> 3 steps per epoch
    assert (plan.steps_per_epoch, plan.epochs, plan.total_steps, plan.warmup_steps) == (3, 2, 6, 1)
    capped = Schedule.for_job(tiny(max_steps=4), n_train=40)
    assert (capped.epochs, capped.total_steps) == (1, 4)


@pytest.mark.slow
def test_train_records_curves_evals_and_summary(tmp_path: Path):
    events = []
    result = train_job(tiny(), tmp_path, on_progress=events.append)
    names = {(split, name) for split, name, *_ in result.metrics}
    assert {("train", "loss"), ("train", "lr"), ("eval", "accuracy"), ("eval", "macro_f1")} <= names
    train_losses = [r for r in result.metrics if r[:2] == ("train", "loss")]
    assert [r[2] for r in train_losses] == list(range(1, 11))  # 5 steps x 2 epochs
    evals = [r for r in result.metrics if r[:2] == ("eval", "accuracy")]
    assert [(r[2], r[3]) for r in evals] == [(5, 1), (10, 2)]
    best = max(r[4] for r in evals)
    assert result.summary["best_accuracy"] == best
    # LoRA r=4 on 6 layers x (q, k, v, attn-out, ffn-in, ffn-out) + pooler, plus the 5-way head.
    d, ffn = 384, 1536
    per_layer = 4 * 4 * (d + d) + 4 * (d + ffn) + 4 * (ffn + d)
    assert result.summary["adapter_params"] == 6 * per_layer + 4 * (d + d)
    assert result.summary["trainable_params"] == result.summary["adapter_params"] + d * 5 + 5
    assert result.summary["step_time_s"] > 0 and result.summary["peak_memory_mb"] > 0
    assert events[-1]["phase"] == "eval" and events[0]["step"] == 1
    assert (tmp_path / CHECKPOINT_NAME).exists()


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path):
    cfg = tiny()
    straight = train_job(cfg, tmp_path / "straight")
    steps = []

    def stop_after_three() -> bool:
        return len(steps) >= 3

    with pytest.raises(Interrupted) as stopped:
        train_job(cfg, tmp_path / "resumed", on_progress=steps.append, should_stop=stop_after_three)
    assert stopped.value.step == 3
    assert load_checkpoint(tmp_path / "resumed")["step"] == 3
    resumed = train_job(cfg, tmp_path / "resumed")
    assert resumed.resumed_from_step == 3
    for a, b in zip(straight.metrics, resumed.metrics, strict=True):
        assert a[:4] == b[:4]
        if a[0] != "summary":
            assert a[4] == pytest.approx(b[4], abs=1e-6), a


@pytest.mark.slow
def test_non_finite_loss_fails_deterministically(tmp_path: Path, monkeypatch):
    from lorabench.tasks.embedded import BbcNews

    monkeypatch.setattr(BbcNews, "loss", lambda self, model, batch: torch.tensor(float("nan"),
                        requires_grad=True))  # fmt: skip
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 1 .*lr=0\.001"):
        train_job(tiny(), tmp_path)


def test_compile_trains_to_the_same_losses(tmp_path: Path):
    config = resolve_job({"task": "noop", "variant": "dora", "lr": 1e-2, "seed": 0,
                          "train_size": 48})  # fmt: skip
    eager = train_job(config, tmp_path / "eager")
    compiled = train_job(config, tmp_path / "compiled", compile=True)
    losses = [[v for s, n, *_, v in r.metrics if (s, n) == ("train", "loss")]
              for r in (eager, compiled)]  # fmt: skip
    assert len(losses[0]) == 6
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-6)
    assert compiled.summary["compiled"] == 1 and "compiled" not in eager.summary
    goat = resolve_job({"task": "noop", "variant": "goat", "lr": 1e-3, "seed": 0})
    assert "compiled" not in train_job(goat, tmp_path / "goat", compile=True).summary


def test_grad_ckpt_changes_memory_not_results(tmp_path: Path):
    from lorabench.train import DeterministicFailure

    config = resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-3, "seed": 0,
                          "batch_size": 8, "max_length": 64, "max_steps": 3,
                          "eval_size": 8})  # fmt: skip
    plain = train_job(config, tmp_path / "plain")
    recomputed = train_job(config, tmp_path / "ckpt", grad_ckpt=True)
    losses = [[v for s, n, *_, v in r.metrics if (s, n) == ("train", "loss")]
              for r in (plain, recomputed)]  # fmt: skip
    assert len(losses[0]) == 3 and losses[0] == losses[1]  # dropout masks included
    noop = resolve_job({"task": "noop", "variant": "lora", "lr": 1e-3, "seed": 0})
    with pytest.raises(DeterministicFailure, match="does not support gradient checkpointing"):
        train_job(noop, tmp_path / "noop", grad_ckpt=True)


def test_work_compile_reaches_the_trainer_alone_and_packed(tmp_path: Path):
    from helpers import only_job_metrics, plan_and_work

    db = tmp_path / "compile.db"
    plan_and_work(db, tmp_path / "runs", "--task", "noop", "--variant", "lora", "--lr", "1e-3",
                  work_args=["--compile"])  # fmt: skip
    summary = {name: value for split, name, _, value in only_job_metrics(str(db))
               if split == "summary"}  # fmt: skip
    assert summary["compiled"] == 1.0
    packed = tmp_path / "packed.db"
    plan_and_work(packed, tmp_path / "runs", "--task", "noop", "--variant", "lora", "--lr",
                  "1e-3,1e-2", work_args=["--compile", "--pack", "2"])  # fmt: skip
    from sqlalchemy import select

    from lorabench.store import open_engine
    from lorabench.store.models import Metric

    engine = open_engine(str(packed), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(Metric.name, Metric.value).where(Metric.split == "summary"))
        values = sorted((name, value) for name, value in rows if name in ("compiled", "pack_size"))
    engine.dispose()
    assert values == [("compiled", 1.0)] * 2 + [("pack_size", 2.0)] * 2
