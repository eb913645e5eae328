"""Batched text generation for evaluation: KV cache, left padding, stop sequences.

`generate` is the one entry point; tasks (GSM8K, HumanEval) call it with their prompts and
score the completions it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for sequence in stop:
        if sequence:
            found = text.find(sequence)
            if found != -1:
                cut = min(cut, found)
    return text[:cut]


def ensure_pad_token(tokenizer: Any) -> None:
    """Decoder-only tokenizers often have no pad token; padding is masked, so EOS serves."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Complete every prompt; returns the new text only, in the order of `prompts`.

    Prompts are tokenised with the tokenizer's defaults (so with BOS where it adds one, like
    training), sorted by token length (longest first, so an out-of-memory error shows in the
    first batch) and generated `batch_size` at a time with left padding and the KV cache.
    Greedy unless `do_sample`; with `seed`, sampling is reproducible and leaves the global RNG
    state as it was. Each completion is decoded without special tokens and cut at its first
    stop sequence; a batch stops once every row has produced EOS or a stop sequence, so short
    answers do not wait for `max_new_tokens`. The model is put in eval mode (adapter dropout
    off) and restored afterwards. A tokenizer without a pad token gets EOS as its pad token.
    """
    if max_new_tokens <= 0 or batch_size <= 0:
        raise ValueError("max_new_tokens and batch_size must be positive")
    if do_sample and not (temperature > 0 and 0 < top_p <= 1):
        raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")
    if not prompts:
        return []
    ensure_pad_token(tokenizer)
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    config = _generation_config(model, tokenizer, max_new_tokens, do_sample, temperature, top_p)
    device = next(model.parameters()).device
    completions: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with (
            _seeded(seed, device),
            _padding_left(tokenizer),
            _progress(progress, len(prompts)) as bar,
        ):
            for rows in batches:
                texts = _generate_batch(
                    model, tokenizer, [prompts[i] for i in rows], config, stop, device
                )
                for i, text in zip(rows, texts, strict=True):
                    completions[i] = cut_at_stop(text, stop)
                bar(len(rows))
    finally:
        model.train(was_training)
    return completions


def _generate_batch(model, tokenizer, prompts, config, stop, device) -> list[str]:  # noqa: ANN001
    from transformers import StoppingCriteriaList

    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    start = encoded["input_ids"].shape[1]
    criteria = StoppingCriteriaList([_StopSequences(tokenizer, stop, start)] if stop else [])
    with torch.no_grad():
        output = model.generate(**encoded, generation_config=config, stopping_criteria=criteria)
    return tokenizer.batch_decode(output[:, start:], skip_special_tokens=True)


def _generation_config(model, tokenizer, max_new_tokens, do_sample, temperature, top_p):  # noqa: ANN001, ANN202
    from transformers import GenerationConfig

    # The model's own EOS list wins (Llama-3.1 ends turns with several ids); else the tokenizer's.
    own = getattr(model, "generation_config", None)
    eos = getattr(own, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": None} if do_sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_beams=1,
        use_cache=True,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **sampling,
    )


class _StopSequences:
    """Marks a row done once its new text contains a stop sequence.

    Only the last few tokens are decoded each step: a stop sequence of n characters spans at
    most n tokens, so a window of (longest + 2) tokens catches it when it completes.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], start: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.start = start
        self.window = max((len(s) for s in self.stop), default=0) + 2

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        new = input_ids[:, self.start :]
        tails = self.tokenizer.batch_decode(new[:, -self.window :], skip_special_tokens=True)
        done = [any(s in tail for s in self.stop) for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@contextlib.contextmanager
def _padding_left(tokenizer: Any) -> Iterator[None]:
    # Decoder-only models continue from the last position: padding must sit on the left.
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("generating", total=total)
        yield lambda n: bar.advance(task, n)
