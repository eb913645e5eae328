"""AdaLoRA (Eqs. (35)-(44)): hand-computed update, importance and scores, the budget schedule
(PEFT's t_i / t_f / delta_T semantics, scaled for short runs), masking to the global budget,
the orthogonality regulariser, the final-rank report and an exact resume."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    PeftSettings,
    StepContext,
    adapter_extra_state,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
    load_adapter_extra_state,
    load_adapter_state_dict,
)
from lorabench.variants.adalora import AdaLoRAParams, budget_at, mask_to_budget, phase_steps

SPEC = get_variant("adalora")
AdaLoRA = SPEC.layer_cls


def test_paper_defaults():
    assert build_params("adalora", None) == AdaLoRAParams(
        init_rank=12, target_rank=8, t_init=100, t_final=900, delta_t=1,
        beta1=0.85, beta2=0.85, orth_reg_weight=0.1, orth_reg="mean_norm",
    )  # fmt: skip
    assert SPEC.family == "rank" and SPEC.merges and SPEC.peft
    for bad in ({"target_rank": 13}, {"target_rank": 0}, {"orth_reg": "l1"}, {"beta1": 1.0}):
        with pytest.raises(InvalidVariantParams):
            build_params("adalora", bad)


def test_layer_uses_init_rank_not_the_job_rank_and_starts_at_zero():
    torch.manual_seed(0)
    layer = AdaLoRA(nn.Linear(300, 200), rank=4, alpha=16)
    assert layer.rank == 12 and layer.scaling == pytest.approx(16 / 12)
    assert layer.lora_A.shape == (12, 300) and layer.lora_B.shape == (200, 12)
    assert layer.lora_E.shape == (12, 1) and torch.count_nonzero(layer.lora_E) == 0
    # AdaLoRA / PEFT: A, B ~ N(0, 0.02^2).
    assert 0.018 < layer.lora_A.std().item() < 0.022 and 0.018 < layer.lora_B.std().item() < 0.022
    assert torch.equal(layer.rank_mask, torch.ones(12))
    assert AdaLoRA.expected_param_count(300, 200, 4, build_params("adalora", None)) == 12 * 501
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_hand_computed_delta_and_forward():
    params = build_params("adalora", {"init_rank": 2, "target_rank": 1})
    layer = AdaLoRA(nn.Linear(3, 2), rank=99, alpha=4.0, params=params)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_E.copy_(torch.tensor([[2.0], [-1.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # B diag(E) A = [[2, -2, 6], [6, 1, 11]], times alpha / r0 = 2.
    expected = torch.tensor([[4.0, -4.0, 12.0], [12.0, 2.0, 22.0]])
    assert torch.equal(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[14.0, 21.0]]), atol=1e-5)


def test_hand_computed_importance_and_triplet_score():
    params = build_params("adalora", {"init_rank": 1, "target_rank": 1})
    layer = AdaLoRA(nn.Linear(2, 2, bias=False), rank=1, alpha=1.0, params=params)
    with torch.no_grad():
        layer.lora_E.fill_(2.0)
        layer.lora_A.copy_(torch.tensor([[1.0, -1.0]]))
        layer.lora_B.copy_(torch.tensor([[2.0], [0.0]]))
    layer.lora_E.grad = torch.tensor([[3.0]])  # I = |2 * 3| = 6          (Eq. (40))
    layer.lora_A.grad = torch.tensor([[1.0, 1.0]])  # I = [1, 1]
    layer.lora_B.grad = torch.tensor([[1.0], [5.0]])  # I = [2, 0]
    layer.update_importance(0.85, 0.85)
    assert layer.ipt_lora_E.item() == pytest.approx(0.9)  # 0.15 * 6       (Eq. (41))
    assert layer.unc_lora_E.item() == pytest.approx(0.9)  # 0.15 * |6 - 0|  (Eq. (42))
    layer.update_importance(0.85, 0.85)
    assert layer.ipt_lora_E.item() == pytest.approx(1.665)  # 0.85 * 0.9 + 0.15 * 6
    assert layer.unc_lora_E.item() == pytest.approx(1.53)  # 0.85 * 0.9 + 0.15 * |6 - 0.9|
    # Eq. (43)-(44): s(E) + mean s(A) + mean s(B)
    #   = 1.665 * 1.53 + 0.2775 * 0.255 + (0.555 * 0.51 + 0) / 2
    assert layer.triplet_scores().item() == pytest.approx(2.7597375)


def test_budget_schedule_follows_peft_phases():
    params = build_params("adalora", None)
    assert phase_steps(2000, params) == (100, 900, 1)  # long runs: the paper's values
    assert phase_steps(50_000, params) == (100, 900, 1)
    assert phase_steps(1000, params) == (50, 450, 1)  # shorter: scaled by T / 2000
    assert phase_steps(20, params) == (1, 9, 1)
    assert phase_steps(8, params) == (0, 3, 1)
    scaled = build_params("adalora", {"delta_t": 10})
    assert phase_steps(1000, scaled) == (50, 450, 5)
    b = [budget_at(t, 2000, 120, 80, params) for t in (1, 100, 101, 600, 1099, 1100, 2000)]
    # Eq. (39) at t = 600: 80 + 40 * (1 - 500 / 1000)^3 = 85; t = 101: floor(119.88).
    assert b == [120, 120, 119, 85, 80, 80, 80]


def test_masking_keeps_exactly_the_budget_best_triplets_over_all_layers():
    params = build_params("adalora", {"init_rank": 3, "target_rank": 1})
    layers = [AdaLoRA(nn.Linear(4, 4), rank=3, alpha=3.0, params=params) for _ in range(2)]
    for layer, scores in zip(layers, ([5.0, 1.0, 3.0], [4.0, 2.0, 0.0]), strict=True):
        with torch.no_grad():
            layer.lora_E.fill_(1.0)
            layer.ipt_lora_E.copy_(torch.tensor(scores).view(3, 1))
            layer.unc_lora_E.fill_(1.0)
    mask_to_budget(layers, 3)
    assert layers[0].rank_mask.tolist() == [1.0, 0.0, 1.0]
    assert layers[1].rank_mask.tolist() == [1.0, 0.0, 0.0]
    assert layers[0].lora_E.view(-1).tolist() == [1.0, 0.0, 1.0]
    assert layers[1].lora_E.view(-1).tolist() == [1.0, 0.0, 0.0]
    for layer in layers:  # all tied: still exactly the budget
        layer.ipt_lora_E.fill_(1.0)
    mask_to_budget(layers, 4)
    assert sum(layer.rank_mask.sum().item() for layer in layers) == 4


def test_orthogonality_loss_hand_computed_both_forms():
    model = nn.Sequential(nn.Linear(3, 3))
    inject(model, "adalora", targets=("0",), rank=2, alpha=2.0,
           params={"init_rank": 2, "target_rank": 1})  # fmt: skip
    with torch.no_grad():
        model[0].lora_A.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))  # AA^T-I=diag(0,3)
        model[0].lora_B.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))  # B^T B = I
    mean_norm = build_params("adalora", {"init_rank": 2, "target_rank": 1})
    paper = build_params("adalora", {"init_rank": 2, "target_rank": 1, "orth_reg": "paper"})
    assert SPEC.extra_loss(model, mean_norm).item() == pytest.approx(0.1 * (3 + 0) / 2)
    assert SPEC.extra_loss(model, paper).item() == pytest.approx(0.1 * (9 + 0))  # Eq. (35)-(36)


# --- a miniature of the trainer's loop (lorabench/train/loop.py) -------------------------------
TOTAL = 40
ADALORA = {"init_rank": 4, "target_rank": 2, "t_init": 4, "t_final": 8, "delta_t": 2}


def _data():
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(5, 6, generator=gen)
    xs = torch.randn(TOTAL, 16, 6, generator=gen)
    return xs, torch.tanh(xs @ w.T)


def _build(**overrides):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
    inject(model, "adalora", targets=("0", "2"), rank=8, alpha=4, dropout=0.1,
           params={**ADALORA, **overrides})  # fmt: skip
    params = build_params("adalora", {**ADALORA, **overrides})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    return model, params, optimizer


def _train(model, params, optimizer, start, stop, record=None):
    xs, ys = _data()
    model.train()
    for step in range(start, stop):
        extra = SPEC.extra_loss(model, params)
        (F.mse_loss(model(xs[step]), ys[step]) + extra).backward()
        optimizer.step()
        SPEC.on_step(StepContext(model, optimizer, step + 1, TOTAL, params))
        optimizer.zero_grad(set_to_none=True)
        if record is not None:
            record.append((extra.item(), [m.rank_mask.clone() for m in (model[0], model[2])]))


def test_total_rank_reaches_the_target_and_the_pattern_then_stays():
    model, params, optimizer = _build()
    record = []
    _train(model, params, optimizer, 0, TOTAL, record)
    totals = [int(sum(mask.sum().item() for mask in masks)) for _, masks in record]
    initial, target = 8, 4
    assert phase_steps(TOTAL, params) == (4, 8, 2)
    assert totals[:4] == [initial] * 4  # t <= t_i: no masking
    for step in range(5, 32):  # masks on even steps, to Eq. (39)'s budget
        if step % 2 == 0:
            assert totals[step - 1] == budget_at(step, TOTAL, initial, target, params)
    assert totals[4] == initial and totals[5] < initial  # step 6 is the first that masks
    assert all(a >= b for a, b in zip(totals[:-1], totals[1:], strict=True))
    final = record[31][1]  # step 32 = T - t_f fixes the final pattern
    assert totals[31:] == [target] * 9
    for _, masks in record[31:]:
        assert all(torch.equal(m, f) for m, f in zip(masks, final, strict=True))
    for layer, mask in zip((model[0], model[2]), final, strict=True):
        assert torch.equal(layer.lora_E.view(-1) != 0, mask.bool())
    report = SPEC.report(model, params)
    assert report == {"rank/0": final[0].sum().item(), "rank/2": final[1].sum().item(),
                      "rank/total": float(target)}  # fmt: skip


def test_orthogonality_loss_is_positive_and_decreases_in_a_short_run():
    model, params, optimizer = _build()
    record = []
    _train(model, params, optimizer, 0, 10, record)
    losses = [extra for extra, _ in record]
    assert all(v > 0 for v in losses)
    assert losses[-1] < 0.85 * losses[0]
    assert all(a > b for a, b in zip(losses[:-1], losses[1:], strict=True))


def test_resume_mid_schedule_gives_identical_results():
    model, params, optimizer = _build()
    _train(model, params, optimizer, 0, TOTAL)
    expected = {n: t.clone() for n, t in model.state_dict().items()}

    model, params, optimizer = _build()
    _train(model, params, optimizer, 0, 13)  # in the annealing phase, between two masks
    saved = copy.deepcopy({
        "adapter": adapter_state_dict(model), "extra": adapter_extra_state(model),
        "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
    })  # fmt: skip
    assert {"0.rank_mask", "0.ipt_lora_A", "0.unc_lora_B"} <= set(saved["extra"])
    model, params, optimizer = _build()
    load_adapter_state_dict(model, saved["adapter"])
    load_adapter_extra_state(model, saved["extra"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])
    _train(model, params, optimizer, 13, TOTAL)
    got = model.state_dict()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


def test_peft_config_carries_the_schedule():
    pytest.importorskip("peft")
    params = build_params("adalora", None)
    settings = PeftSettings(targets=["x"], rank=4, alpha=8, dropout=0.0, params=params,
                            modules_to_save=[])  # fmt: skip
    config = SPEC.peft_export.make_config(settings)
    assert (config.init_r, config.target_r, config.tinit, config.tfinal) == (12, 8, 100, 900)
    assert (config.beta1, config.beta2, config.orth_reg_weight) == (0.85, 0.85, 0.1)
    assert config.tinit < config.total_step - config.tfinal
