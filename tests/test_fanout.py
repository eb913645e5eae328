"""Packed evaluation: K jobs scored in one wide pass give each job its own solo scores."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.config import resolve_job
from lorabench.tasks.generation import generate
from lorabench.tasks.models import SMOLLM2, resolve_model
from lorabench.train import train_job
from lorabench.train.fanout import NotFannable, evaluate_fanned, routed
from lorabench.train.packed import _load_into as load
from lorabench.train.packed import train_packed
from lorabench.variants import inject

PROMPTS = ["The capital of France is", "def add(a, b):", "1, 2, 3,", "Once upon a time"]


def job_tensors(model: nn.Module, seeds: list[int]) -> list[dict[str, torch.Tensor]]:
    """One set of trainable tensors per seed, each perturbed differently from the init."""
    jobs = []
    for seed in seeds:
        copy_ = copy.deepcopy(model)
        with torch.no_grad():
            randomise(copy_, seed=seed, scale=0.05)
        jobs.append({n: p.detach().clone() for n, p in copy_.named_parameters() if p.requires_grad})
    return jobs


@pytest.fixture(scope="module")
def smollm2_with_lora():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    inject(model, "lora", targets=["q_proj", "v_proj", "down_proj"], rank=4, alpha=8.0)
    return model, AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
def test_fanned_generation_gives_each_job_its_own_greedy_text(smollm2_with_lora):
    model, tokenizer = smollm2_with_lora
    jobs = job_tensors(model, [1, 2, 3])
    torch.set_num_threads(1)

    def complete(stand_in) -> list[str]:  # noqa: ANN001
        return generate(stand_in, tokenizer, PROMPTS, max_new_tokens=10, stop=["\n\n"],
                        batch_size=3)  # fmt: skip

    fanned = evaluate_fanned(model, jobs, complete)
    alone = []
    for tensors in jobs:
        load(model, tensors)
        alone.append(complete(model))
    assert fanned == alone
    assert len({tuple(texts) for texts in alone}) == 3  # the adapters really differ
    with pytest.raises(NotFannable, match="sampled"):
        evaluate_fanned(model, jobs, lambda m: generate(m, tokenizer, PROMPTS[:1], max_new_tokens=2,
                                                        do_sample=True, seed=0))  # fmt: skip


@pytest.mark.parametrize("variant", ["lora", "dora", "vera", "loramoe"])
def test_routed_layers_equal_each_jobs_own_model(variant):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    inject(model, variant, targets=["0", "2"], rank=2, alpha=4.0, trainable=["4"])
    jobs = job_tensors(model, [5, 6, 7, 8])
    x = torch.randn(5, 6)
    with routed(model, jobs), torch.no_grad():
        wide = model(x.repeat(4, 1)).unflatten(0, (4, -1))
    for k, tensors in enumerate(jobs):
        load(model, tensors)
        with torch.no_grad():
            torch.testing.assert_close(wide[k], model(x), rtol=1e-5, atol=1e-6)
    assert isinstance(model[0], type(model[2]))  # the adapter layers are back in place
    assert [n for n, _ in model.named_parameters()] == list(dict(model.named_parameters()))


def calling_n_times(counts):  # noqa: ANN001, ANN201
    def probe(stand_in) -> list:  # noqa: ANN001
        return [stand_in(torch.ones(1, 4)) for _ in range(next(counts))]

    return probe


def test_an_evaluation_that_asks_each_job_differently_is_not_fanned():
    model = nn.Sequential(nn.Linear(4, 4))
    inject(model, "lora", targets=["0"], rank=2, alpha=2.0)
    jobs = job_tensors(model, [1, 2])
    calls = iter(range(10))

    def shifting(stand_in) -> float:  # noqa: ANN001
        return stand_in(torch.full((2, 4), float(next(calls)))).sum().item()

    with pytest.raises(NotFannable, match="other inputs"):
        evaluate_fanned(model, jobs, shifting)
    for counts, words in (([2, 1], "fewer times"), ([1, 2], "more times")):
        with pytest.raises(NotFannable, match=words):
            evaluate_fanned(model, jobs, calling_n_times(iter(counts)))


def test_a_pack_falls_back_to_one_job_at_a_time_when_evaluation_cannot_fan_out(
    monkeypatch, tmp_path: Path
):
    import lorabench.tasks.noop as noop

    evaluate = noop.Noop.evaluate

    def with_a_random_probe(self, model, batches, split="test"):  # noqa: ANN001
        model(torch.randn(2, 4))  # other inputs for every job: replay must refuse
        return evaluate(self, model, batches, split)

    monkeypatch.setattr(noop.Noop, "evaluate", with_a_random_probe)
    shared = {"task": "noop", "variant": "lora", "seed": 4, "train_size": 32}
    configs = [resolve_job({**shared, "lr": lr}) for lr in (1e-3, 1e-2, 3e-2)]
    packed = train_packed(configs, [tmp_path / f"p{i}" for i in range(3)])
    for i, (config, together) in enumerate(zip(configs, packed, strict=True)):
        alone = train_job(config, tmp_path / f"solo-{i}")
        assert together.summary["packed_evals"] == 0
        scores = [v for s, n, _, _, v in together.metrics if (s, n) == ("eval", "score")]
        assert scores == pytest.approx(
            [v for s, n, _, _, v in alone.metrics if (s, n) == ("eval", "score")], rel=1e-6
        )
