"""Batched generation: equal to one-at-a-time and to a cache-free greedy loop, stop sequences,
order, seeds; with lorabench adapters injected."""

import copy

import pytest
import torch
from helpers import randomise

from lorabench.tasks.generation import cut_at_stop, generate
from lorabench.tasks.models import SMOLLM2, resolve_model
from lorabench.variants import inject

PROMPTS = [
    "The capital of France is",
    "def add(a, b):",
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:",
    "1, 2, 3,",
    "Once upon a time",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Decoding runs many tiny matmuls; on a shared 2-core machine two threads spin-wait on
    # each other and run up to 10x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(SMOLLM2)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def greedy_without_cache(model, tokenizer, prompt: str, n: int) -> str:
    """The reference: full forward over the whole sequence each step, no padding, no cache."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=ids, use_cache=False).logits[0, -1]
            ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
            if ids[0, -1].item() == tokenizer.eos_token_id:
                break
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True)


def test_cut_at_stop():
    assert cut_at_stop("a. b\n\nc", ["\n\n", "."]) == "a"
    assert cut_at_stop("abc", ["x", ""]) == "abc"
    assert cut_at_stop("abc", []) == "abc"
    assert cut_at_stop("### Instruction: more", ["### Instruction"]) == ""


def test_batched_greedy_equals_one_at_a_time_in_input_order(smollm2):
    model, tokenizer = smollm2
    single = [generate(model, tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    # batch_size 2 over 5 prompts of different lengths: sorting, padding and a ragged last batch.
    batched = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    assert batched == single
    assert len(set(single)) == len(PROMPTS)  # distinct outputs, so order is really checked
    assert single[0] == greedy_without_cache(model, tokenizer, PROMPTS[0], 6)
    assert tokenizer.padding_side == "right"  # restored


def test_stop_sequences_cut_and_end_the_batch_early(smollm2):
    model, tokenizer = smollm2
    full = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=8)[0]
    assert full.startswith(" Paris.")
    calls = []
    hook = model.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        [cut] = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=40, stop=["."])
    finally:
        hook.remove()
    assert cut == " Paris"
    assert len(calls) <= 4  # prefill + " Paris" + "." (+1 slack), not 40 steps
    # In a batch, a row that stopped is cut; the other row runs on unchanged.
    both = generate(model, tokenizer, PROMPTS[:2], max_new_tokens=8, stop=["."], batch_size=2)
    assert both == [
        " Paris",
        cut_at_stop(generate(model, tokenizer, PROMPTS[1:2], max_new_tokens=8)[0], ["."]),
    ]


def test_sampling_is_reproducible_by_seed_and_leaves_the_global_rng_alone(smollm2):
    model, tokenizer = smollm2
    kwargs = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.0, "batch_size": 2}
    prompts = PROMPTS[:3]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate(model, tokenizer, prompts, seed=7, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == generate(model, tokenizer, prompts, seed=7, **kwargs)
    assert a != generate(model, tokenizer, prompts, seed=8, **kwargs)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=2, do_sample=True, temperature=0.0)


def test_generation_with_adapters_matches_the_cache_free_loop(smollm2):
    """Adapters wrap nn.Linear: the KV-cache path sees one new token per step and must give
    the same greedy text as recomputing everything; dropout is off while generating."""
    base, tokenizer = smollm2
    model = copy.deepcopy(base)
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    inject(model, "lora", targets=targets, rank=4, alpha=8.0, dropout=0.5)
    with torch.no_grad():
        randomise(model, scale=0.05)
    model.train()
    prompts = PROMPTS[:3]
    ours = generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=3)
    assert model.training  # restored
    model.eval()
    assert ours == [greedy_without_cache(model, tokenizer, p, 5) for p in prompts]
    assert ours != generate(base, tokenizer, prompts, max_new_tokens=5, batch_size=3)
    encoded = tokenizer(prompts[:1], return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**encoded, max_new_tokens=5, do_sample=False, use_cache=True)
        uncached = model.generate(**encoded, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_edge_cases(smollm2):
    model, tokenizer = smollm2
    assert generate(model, tokenizer, [], max_new_tokens=4) == []
    with pytest.raises(ValueError, match="positive"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=0)


def test_a_tokenizer_without_pad_token_pads_with_eos(tmp_path):
    from test_nlg import make_tiny_lm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = make_tiny_lm(tmp_path)
    tokenizer, model = (
        AutoTokenizer.from_pretrained(folder),
        AutoModelForCausalLM.from_pretrained(folder),
    )
    tokenizer.pad_token = None
    prompts = ["two plus", "question two plus two answer", "the"]
    batched = generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=3)
    assert tokenizer.pad_token == "</s>"
    assert batched == [generate(model, tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
