"""Every variant, killed mid-run and resumed from its checkpoint, ends where an uninterrupted
run of the same seed ends; the trainer calls variant hooks generically."""

import dataclasses
from pathlib import Path

import pytest
import torch

from lorabench.config import resolve_job
from lorabench.train import loop as loop_module
from lorabench.train import train_job
from lorabench.variants import get_variant, variant_names


class Killed(Exception):
    """Stands in for kill -9: the run stops with no final checkpoint."""


# Data-driven initialisations estimate from few batches here: what is tested is that a resumed
# run restores the prepared state instead of preparing again, not how good the estimate is.
QUICK_PREPARE = {"lora-ga": {"steps": 4}, "lora-one": {"steps": 4}, "eva": {"steps": 4},
                 "corda": {"samples": 16}}  # fmt: skip


def tiny(variant: str):
    return resolve_job({
        "task": "bbc-news", "variant": variant, "lr": 2e-3, "train_size": 32, "eval_size": 16,
        "epochs": 2, "max_length": 32, "batch_size": 8,
        "variant_params": QUICK_PREPARE.get(variant, {}),
    })  # fmt: skip


def final(result) -> dict:
    return {
        (split, name, step): value
        for split, name, step, _, value in result.metrics
        if split != "summary" or name.startswith("best_")
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant", variant_names())
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(variant, tmp_path: Path):
    cfg = tiny(variant)
    straight = train_job(cfg, tmp_path / "straight", checkpoint_every=2)
    steps = []

    def kill_at_step_three() -> bool:
        if len(steps) >= 3:
            raise Killed
        return False

    with pytest.raises(Killed):
        train_job(cfg, tmp_path / "killed", on_progress=lambda e: steps.append(e),
                  should_stop=kill_at_step_three, checkpoint_every=2)  # fmt: skip
    resumed = train_job(cfg, tmp_path / "killed", checkpoint_every=2)
    assert resumed.resumed_from_step == 2
    expected, got = final(straight), final(resumed)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key


def test_trainer_calls_every_hook(tmp_path: Path, monkeypatch):
    calls: dict[str, int] = {"prepare": 0, "restore": 0, "on_step": 0, "extra": 0}

    def prepare(ctx):
        calls["prepare"] += 1
        batches = list(ctx.batches(3))
        assert len(batches) == 3 and ctx.loss(ctx.model, batches[0]).ndim == 0
        return {"marker": torch.tensor([7.0])}

    def restore(model, state, params):
        calls["restore"] += 1
        assert state["marker"].item() == 7.0

    def param_groups(model, lr, params):
        adapters = [p for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and "lora_B" not in n]
        return [{"params": adapters, "lr": lr * 4}, {"params": rest}]

    def on_step(ctx):
        calls["on_step"] += 1
        assert ctx.step == calls["on_step"] and ctx.total_steps == 8
        assert len(ctx.optimizer.param_groups) == 2
        assert any(p.grad is not None for p in ctx.optimizer.param_groups[0]["params"])

    def extra_loss(model, params):
        calls["extra"] += 1
        return torch.tensor(0.25)

    spec = dataclasses.replace(
        get_variant("lora"), prepare=prepare, restore=restore, param_groups=param_groups,
        on_step=on_step, lr_multiplier=lambda step, total, params: 0.5,
        extra_loss=extra_loss, report=lambda model, params: {"custom": 3.0},
    )  # fmt: skip
    monkeypatch.setattr(loop_module, "get_variant", lambda name: spec)
    result = train_job(tiny("lora"), tmp_path)
    assert calls["prepare"] == 1 and calls["restore"] == 0 and calls["on_step"] == 8
    assert calls["extra"] == 8  # once per micro-batch
    assert (tmp_path / "prepared.pt").exists()
    summary = {name: v for split, name, _, _, v in result.metrics if split == "summary"}
    assert summary["custom"] == 3.0 and summary["prepare_seconds"] >= 0
    train = [(name, v) for split, name, *_, v in result.metrics if split == "train"]
    assert [v for name, v in train if name == "extra_loss"] == [0.25] * 8
    lrs = [v for name, v in train if name == "lr"]
    # The multiplier halves the schedule; group 0 (lora_B, 4x lr) is the one reported.
    assert max(lrs) == pytest.approx(4 * 2e-3 * 0.5)
    # A rerun in the same folder restores the prepared state instead of preparing again.
    (tmp_path / "checkpoint.pt").unlink()
    calls.update(prepare=0, on_step=0)
    train_job(tiny("lora"), tmp_path)
    assert calls["prepare"] == 0 and calls["restore"] == 1
