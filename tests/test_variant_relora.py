"""ReLoRA (Eqs. (12)-(13)): merge-and-reinit keeps the function, resets the adapters' AdamW
state, re-warms the lr, accumulates rank beyond r, and a resumed run is identical."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    StepContext,
    adapter_extra_state,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
    load_adapter_extra_state,
    load_adapter_state_dict,
)
from lorabench.variants.relora import ReLoRAParams, restart_steps, rewarm_length

SPEC = get_variant("relora")
ReLoRA = SPEC.layer_cls


def test_paper_defaults_and_registration():
    # Paper: 3-5 merge-and-reinit per run (we take 4), 10 re-warm-up steps after each.
    assert build_params("relora", None) == ReLoRAParams(restarts=4, rewarm_steps=10)
    assert SPEC.family == "rank" and SPEC.merges and not SPEC.peft
    assert ReLoRA.modifies_base and ReLoRA.zero_init
    with pytest.raises(InvalidVariantParams):
        build_params("relora", {"restarts": -1})


def test_hand_computed_merge_and_reinit():
    base = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    layer = ReLoRA(base, rank=2, alpha=4.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    torch.manual_seed(5)
    layer.merge_and_reinit()
    # Eq. (12): W + (4 / 2) [[1, 2, 0], [3, -1, 7]]
    assert torch.equal(layer.base.weight, torch.tensor([[3.0, 4.0, 0.0], [6.0, -1.0, 14.0]]))
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(3)
    assert 0 < layer.lora_A.abs().max().item() <= bound
    # A is re-drawn from the (checkpointed) CPU generator: same seed, same draw.
    torch.manual_seed(5)
    assert torch.equal(layer.lora_A, torch.empty(2, 3).uniform_(-bound, bound))


def test_restart_steps_split_the_run_into_equal_phases():
    assert restart_steps(1000, 4) == [200, 400, 600, 800]  # Eq. (12): t_tau = tau * T
    assert restart_steps(10, 3) == [2, 5, 7]
    assert restart_steps(3, 4) == [1, 2]  # collisions dropped, never at the last step
    assert restart_steps(100, 0) == []


def test_lr_multiplier_rewarms_from_zero_over_ten_steps_after_each_restart():
    params = build_params("relora", None)
    m = [SPEC.lr_multiplier(step, 1000, params) for step in range(1000)]
    assert m[:200] == [1.0] * 200
    for k in (200, 400, 600, 800):
        assert m[k - 1] == 1.0
        assert m[k : k + 11] == pytest.approx([i / 10 for i in range(11)])
        assert m[k + 11 : k + 20] == [1.0] * 9
    assert rewarm_length(1000, params) == 10


def test_rewarm_is_capped_in_short_runs():
    params = build_params("relora", None)
    assert rewarm_length(48, params) == 2  # phases of 9 steps: a quarter of one
    assert [SPEC.lr_multiplier(s, 48, params) for s in (8, 9, 10, 11)] == [1.0, 0.0, 0.5, 1.0]
    assert all(SPEC.lr_multiplier(s, 12, params) == 1.0 for s in range(12))


def _adam_step(model, x):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**x).logits.pow(2).sum().backward()
    optimizer.step()
    return optimizer


def test_merge_keeps_function_and_resets_adapter_optimizer_state(minilm, batch):
    inject(minilm, "relora", targets=("query", "value"), rank=4, alpha=8,
           trainable=("classifier",))  # fmt: skip
    randomise(minilm)
    optimizer = _adam_step(minilm, batch)
    layers = [m for m in minilm.modules() if isinstance(m, ReLoRA)]
    head = minilm.classifier.weight
    head_state = {k: v.clone() for k, v in optimizer.state[head].items()}
    old_a = [layer.lora_A.detach().clone() for layer in layers]
    minilm.eval()
    with torch.no_grad():
        before = minilm(**batch).logits
    params = build_params("relora", None)
    # Not a restart step: nothing happens.
    SPEC.on_step(StepContext(minilm, optimizer, 199, 1000, params))
    assert all(torch.equal(layer.lora_A, a) for layer, a in zip(layers, old_a, strict=True))
    SPEC.on_step(StepContext(minilm, optimizer, 200, 1000, params))
    with torch.no_grad():
        after = minilm(**batch).logits
    assert (after - before).abs().max().item() <= 1e-5
    for layer, a in zip(layers, old_a, strict=True):
        assert torch.count_nonzero(layer.lora_B) == 0 and not torch.equal(layer.lora_A, a)
        for p in (layer.lora_A, layer.lora_B):
            state = optimizer.state[p]
            assert set(state) >= {"exp_avg", "exp_avg_sq", "step"}
            assert all(torch.count_nonzero(v) == 0 for v in state.values())
    # The head's optimizer state is not the adapters' and survives.
    for key, value in head_state.items():
        assert torch.equal(optimizer.state[head][key], value)
        assert torch.count_nonzero(value) > 0


# --- a miniature of the trainer's loop (lorabench/train/loop.py), with a checkpoint ------------
TOTAL = 32
RELORA = {"restarts": 3, "rewarm_steps": 2}


def _data():
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(5, 6, generator=gen)
    xs = torch.randn(TOTAL, 16, 6, generator=gen)
    return xs, xs @ w.T


def _build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
    inject(model, "relora", targets=("0", "2"), rank=1, alpha=2, dropout=0.1)
    params = build_params("relora", RELORA)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: SPEC.lr_multiplier(step, TOTAL, params)
    )
    return model, params, optimizer, scheduler


def _train(model, params, optimizer, scheduler, start, stop, lrs=None):
    xs, ys = _data()
    model.train()
    for step in range(start, stop):
        if lrs is not None:
            lrs.append(scheduler.get_last_lr()[0])
        F.mse_loss(model(xs[step]), ys[step]).backward()
        optimizer.step()
        SPEC.on_step(StepContext(model, optimizer, step + 1, TOTAL, params))
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _checkpoint(model, optimizer, scheduler):
    return copy.deepcopy({
        "adapter": adapter_state_dict(model), "extra": adapter_extra_state(model),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    })  # fmt: skip


def test_training_accumulates_rank_beyond_r_and_follows_the_jagged_schedule():
    model, params, optimizer, scheduler = _build()
    w0 = model[0].base.weight.detach().clone()
    lrs = []
    _train(model, params, optimizer, scheduler, 0, TOTAL, lrs)
    assert restart_steps(TOTAL, 3) == [8, 16, 24]
    assert rewarm_length(TOTAL, params) == 2
    # The lr used by step s + 1 is the multiplier at s: zero right after each merge.
    assert lrs[7:11] == pytest.approx([2e-2, 0.0, 1e-2, 2e-2])
    assert lrs[23:27] == pytest.approx([2e-2, 0.0, 1e-2, 2e-2])
    with torch.no_grad():
        total_update = model[0].base.weight + model[0].delta_weight() - w0
    # Rank-1 adapters, three merges: Eq. (12) sums four rank-1 updates (Eq. (5)).
    assert torch.linalg.matrix_rank(total_update).item() == 4


def test_resume_mid_cycle_gives_identical_results():
    model, params, optimizer, scheduler = _build()
    _train(model, params, optimizer, scheduler, 0, TOTAL)
    expected = {n: t.clone() for n, t in model.state_dict().items()}

    model, params, optimizer, scheduler = _build()
    _train(model, params, optimizer, scheduler, 0, 9)  # after the first merge, mid re-warm-up
    saved = _checkpoint(model, optimizer, scheduler)
    model, params, optimizer, scheduler = _build()  # a fresh process: base weights unmerged
    assert not torch.equal(model[0].base.weight, saved["extra"]["0.base.weight"])
    load_adapter_state_dict(model, saved["adapter"])
    load_adapter_extra_state(model, saved["extra"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    _train(model, params, optimizer, scheduler, 9, TOTAL)
    got = model.state_dict()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
