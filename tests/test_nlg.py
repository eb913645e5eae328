"""CausalLMTask and the GSM8K tasks: templates, label masking, subsampling, data sources.

A tiny word-level tokenizer and a tiny random Llama, saved into tmp_path, make token ids
hand-checkable and go through the same `from_pretrained` path as a hub model.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from lorabench.tasks import TaskSettings, build_task, build_task_params, get_task_info
from lorabench.tasks.base import InvalidTaskParams
from lorabench.tasks.gsm8k import Gsm8k, embedded_gsm8k_split
from lorabench.tasks.models import SMOLLM2
from lorabench.tasks.nlg import IGNORE_INDEX, CausalLMTask, InstructionDataParams, subsample
from lorabench.tasks.nlg import response_loss as nlg_response_loss
from lorabench.tasks.sources import DataSourceError

# fmt: off
WORDS = ["<pad>", "</s>", "<s>", "<unk>", "question", "answer", "two", "plus", "four", "####",
         "5", "the", "is", ":", ".", "4", "18", "three", "one"]
# fmt: on
ID = {w: i for i, w in enumerate(WORDS)}
PAD, EOS, BOS = ID["<pad>"], ID["</s>"], ID["<s>"]


def make_tiny_lm(folder: Path) -> Path:
    """A word-level tokenizer (BOS added to each text) and a random 2-layer Llama."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(ID, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", BOS)]
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


class PlainTask(CausalLMTask):
    """A minimal subclass: bare template, data from params, scored by exact string match."""

    template = "question {instruction} answer"
    info = get_task_info("gsm8k")

    def eval_records(self):
        return [{"prompt": self.format_prompt(q), "gold": a} for q, a in [("two", "4")] * 3]

    def score(self, records, completions):
        hits = [c.strip() == r["gold"] for r, c in zip(records, completions, strict=True)]
        return {"exact": sum(hits) / len(hits)}


def settings(model, *, max_length=64, seed=0, train_size=None, eval_size=None,
             select_split=True, **params):  # fmt: skip
    cls = get_task_info(params.pop("_task", "gsm8k")).params_cls
    return TaskSettings(
        model=str(model),
        max_length=max_length,
        seed=seed,
        train_size=train_size,
        eval_size=eval_size,
        params=cls(**params),
        select_split=select_split,
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- template, label masking, collate, loss -----------------------------------------------------


def test_prompt_and_response_tokens_and_labels_are_exact(tiny_lm):
    task = PlainTask(settings(tiny_lm))
    [example] = task.encode_pairs([("two plus two", "four")])
    # BOS question two plus two answer | four EOS: loss on the response and EOS only.
    assert example["input_ids"] == [2, 4, 6, 7, 6, 5, 8, 1]
    assert example["labels"] == [-100, -100, -100, -100, -100, -100, 8, 1]


def test_truncation_keeps_the_first_max_length_tokens(tiny_lm):
    task = PlainTask(settings(tiny_lm, max_length=7))
    [cut] = task.encode_pairs([("two plus two", "four is 4")])
    assert cut["input_ids"] == [2, 4, 6, 7, 6, 5, 8]
    assert cut["labels"] == [-100] * 6 + [8]
    short = PlainTask(settings(tiny_lm, max_length=3))
    [prompt_only] = short.encode_pairs([("two plus two", "four")])
    assert prompt_only == {"input_ids": [2, 4, 6], "labels": [-100, -100, -100]}


def test_collate_pads_right_with_masked_labels(tiny_lm):
    task = PlainTask(settings(tiny_lm))
    batch = task.collate(task.encode_pairs([("two", "four"), ("two plus two", "4")]))
    assert batch["input_ids"].tolist() == [[2, 4, 6, 5, 8, 1, 0, 0], [2, 4, 6, 7, 6, 5, 15, 1]]
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0, 0], [1] * 8]
    assert batch["labels"].tolist() == [
        [-100, -100, -100, -100, 8, 1, -100, -100],
        [-100] * 6 + [15, 1],
    ]


def test_response_loss_by_hand():
    # Vocabulary 2, logits (ln 3, 0) everywhere: p(token 0) = 3/4, p(token 1) = 1/4.
    logits = torch.tensor([[[math.log(3), 0.0]] * 4])
    labels = torch.tensor([[IGNORE_INDEX, 0, 1, IGNORE_INDEX]])
    # Positions 0 and 1 predict labels[1] = 0 and labels[2] = 1; position 2 predicts nothing.
    expected = (-math.log(3 / 4) - math.log(1 / 4)) / 2
    assert nlg_response_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_response_loss_of_a_fully_masked_batch_is_zero_with_a_graph():
    logits = torch.zeros(2, 3, 5, requires_grad=True)
    loss = nlg_response_loss(logits, torch.full((2, 3), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_task_loss_equals_hugging_face_loss_on_response_tokens(tiny_lm):
    task = PlainTask(settings(tiny_lm))
    model = task.load_model()
    batch = task.collate(task.encode_pairs([("two", "four"), ("two plus two", "4 is four")]))
    ours = task.loss(model, batch)
    theirs = model(**batch).loss  # HF shifts and ignores -100 the same way
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


# --- subsampling ---------------------------------------------------------------------------------


def test_subsample_by_seed():
    first = subsample(1000, 50, seed=1)
    assert first == subsample(1000, 50, seed=1)
    assert first != subsample(1000, 50, seed=2)
    assert first == sorted(set(first)) and len(first) == 50 and first[0] >= 0 and first[-1] < 1000
    assert subsample(10, None, seed=1) == list(range(10))
    assert subsample(10, 20, seed=1) == list(range(10))


# --- training sources through the real loader ---------------------------------------------------

METAMATH_ROWS = [
    {
        "query": f"what is two plus {n}",
        "response": f"two plus {n} is {n + 2}. The answer is: {n + 2}",
        "type": "GSM_AnsAug",
    }
    for n in range(12)
]


def _sources(tmp_path: Path) -> dict[str, Path]:
    import datasets

    table = datasets.Dataset.from_list(METAMATH_ROWS)
    jsonl = write_jsonl(tmp_path / "metamath.jsonl", METAMATH_ROWS)
    parquet = tmp_path / "metamath.parquet"
    table.to_parquet(str(parquet))
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": table}).save_to_disk(str(saved))
    hub = tmp_path / "MetaMathQA"
    (hub / "data").mkdir(parents=True)
    table.to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    (hub / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
        "    path: data/train-*\n---\n# MetaMathQA-shaped fixture\n"
    )
    return {"jsonl": jsonl, "parquet": parquet, "save_to_disk": saved, "hub layout": hub}


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "save_to_disk", "hub layout"])
def test_training_rows_from_local_sources(tiny_lm, tmp_path, kind):
    source = _sources(tmp_path)[kind]
    # Off: the rows drawn before the select split existed.
    task = Gsm8k(settings(tiny_lm, data=str(source), train_size=5, seed=3, select_split=False))
    examples = task.load("train")
    chosen = subsample(len(METAMATH_ROWS), 5, seed=3)
    assert len(examples) == 5
    for example, index in zip(examples, chosen, strict=True):
        n = index
        response = [
            t
            for t, label in zip(example["input_ids"], example["labels"], strict=True)
            if label != IGNORE_INDEX
        ]
        # "The answer is: N" became "#### N": the tokens after the prompt say so.
        expected = task.tokenizer(
            f"two plus {n} is {n + 2}.\n#### {n + 2}", add_special_tokens=False
        )["input_ids"]
        assert response == [*expected, EOS]


def test_seeds_draw_different_training_rows(tiny_lm, tmp_path):
    source = _sources(tmp_path)["jsonl"]
    a = Gsm8k(settings(tiny_lm, data=str(source), train_size=4, seed=0)).load("train")
    b = Gsm8k(settings(tiny_lm, data=str(source), train_size=4, seed=0)).load("train")
    c = Gsm8k(settings(tiny_lm, data=str(source), train_size=4, seed=1)).load("train")
    assert a == b
    assert a != c


def test_missing_fields_and_bad_sources_name_the_problem(tiny_lm, tmp_path):
    source = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "q", "output": "a"}])
    task = Gsm8k(settings(tiny_lm, data=str(source)))
    with pytest.raises(DataSourceError, match="no field 'query'.*instruction, output"):
        task.load("train")
    renamed = Gsm8k(
        settings(tiny_lm, data=str(source), query_field="instruction", response_field="output")
    )
    assert len(renamed.load("train")) == 1
    missing = Gsm8k(settings(tiny_lm, data=str(tmp_path / "nowhere" / "x.jsonl")))
    with pytest.raises(DataSourceError, match="nowhere"):
        missing.load("train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        task.load("dev")


def test_gsm8k_select_is_held_out_metamath_rows_scored_by_their_final_number(tiny_lm, tmp_path):
    from lorabench.tasks.selection import carve

    rows = [*METAMATH_ROWS, {"query": "simplify", "response": "The answer is: 2\\sqrt{3}"}]
    source = write_jsonl(tmp_path / "metamath.jsonl", rows * 2)  # 26 rows: 3 held out
    pool, held = carve(range(26), cap=200)
    for seed in (0, 5):
        task = Gsm8k(settings(tiny_lm, data=str(source), train_size=4, seed=seed))
        train = task.load("train")
        chosen = [pool[i] for i in subsample(len(pool), 4, seed)]
        assert train == task.encode_pairs([task.training_pair(rows[i % 13]) for i in chosen])
        # MATH-style answers stay held out but are not scored: "2\sqrt{3}" is not "2".
        numeric = [i for i in held if i % 13 < 12]
        assert [r["gold"] for r in task._select_set()] == [str(i % 13 + 2) for i in numeric]
        assert task.load("select") == [{"index": i} for i in range(len(numeric))]
    off = Gsm8k(settings(tiny_lm, data=str(source), select_split=False))
    assert off.load("select") == [] and len(off.load("train")) == 26


def test_params_are_validated_at_plan_time():
    with pytest.raises(InvalidTaskParams, match="unknown parameter 'max_tokens'"):
        build_task_params("gsm8k", {"max_tokens": 3})
    with pytest.raises(InvalidTaskParams, match="max_new_tokens"):
        build_task_params("gsm8k-mini", {"max_new_tokens": 0})
    params = build_task_params("gsm8k", {"data": "/data/metamath.jsonl"})
    assert isinstance(params, InstructionDataParams)
    assert (params.data, params.eval_data, params.eval_config) == (
        "/data/metamath.jsonl",
        "openai/gsm8k",
        "main",
    )


# --- GSM8K evaluation data in the hub layout ------------------------------------------------------

GSM8K_ROWS = [
    {"question": "two plus two", "answer": "two plus two is <<2+2=4>>4.\n#### 4"},
    {"question": "three plus two", "answer": "three plus two is 5\n#### 5"},
    {"question": "cost of one", "answer": "one costs $1,018.00\n#### 1,018"},
]


def gsm8k_hub_folder(root: Path) -> Path:
    """openai/gsm8k's layout: configs main and socratic, each with train and test parquet."""
    import datasets

    folder = root / "gsm8k"
    for config in ("main", "socratic"):
        (folder / config).mkdir(parents=True)
        for split in ("train", "test"):
            datasets.Dataset.from_list(GSM8K_ROWS).to_parquet(
                str(folder / config / f"{split}-00000-of-00001.parquet")
            )
    yaml = "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*\n"
        f"  - split: test\n    path: {c}/test-*\n"
        for c in ("main", "socratic")
    )
    (folder / "README.md").write_text(f"---\nconfigs:\n{yaml}---\n# GSM8K-shaped fixture\n")
    return folder


def test_gsm8k_records_from_a_hub_layout_folder(tiny_lm, tmp_path):
    folder = gsm8k_hub_folder(tmp_path)
    task = Gsm8k(settings(tiny_lm, eval_data=str(folder), eval_size=2))
    assert task.load("validation") == [{"index": 0}, {"index": 1}]
    records = Gsm8k(settings(tiny_lm, eval_data=str(folder))).eval_records()
    assert [r["gold"] for r in records] == ["4", "5", "1018"]
    assert records[0]["prompt"] == task.format_prompt("two plus two")
    assert records[0]["prompt"].endswith("### Instruction:\ntwo plus two\n\n### Response:\n")
    batch = task.collate_eval([{"index": 1}, {"index": 0}])
    assert batch["index"].tolist() == [1, 0]


def test_unknown_gsm8k_config_is_a_clear_error(tiny_lm, tmp_path):
    folder = gsm8k_hub_folder(tmp_path)
    task = Gsm8k(settings(tiny_lm, eval_data=str(folder), eval_config="mian"))
    with pytest.raises(DataSourceError, match="config 'mian'"):
        task.load("validation")


def test_gold_without_final_number_is_refused(tiny_lm, tmp_path):
    rows = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no marker 4"}])
    task = Gsm8k(settings(tiny_lm, eval_data=str(rows)))
    with pytest.raises(DataSourceError, match="row 0.*'#### N'"):
        task.eval_records()


def test_evaluate_scores_the_generated_completions(tiny_lm, tmp_path):
    """The reported accuracies are those of the dumped completions, re-extracted here."""
    from lorabench.tasks.gsm8k import accuracy

    dump = tmp_path / "gens.jsonl"
    folder = gsm8k_hub_folder(tmp_path)
    task = Gsm8k(
        settings(
            tiny_lm,
            eval_data=str(folder),
            max_new_tokens=6,
            eval_batch_size=2,
            dump_generations=str(dump),
        )
    )
    model = task.load_model()
    data = task.load("validation")
    evaluation = task.evaluate(model, [task.collate_eval(data[:2]), task.collate_eval(data[2:])])
    scores = evaluation.scores
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    rows, [summary] = lines[:-1], lines[-1:]
    assert [r["gold"] for r in rows] == ["4", "5", "1018"]
    completions = [r["completion"] for r in rows]
    assert all(c for c in completions)  # a random model still emits words
    golds = [r["gold"] for r in rows]
    assert scores == {
        "accuracy_strict": accuracy(completions, golds, "strict"),
        "accuracy_flexible": accuracy(completions, golds, "flexible"),
    }
    assert summary == {"evaluation": 1, "split": "test", "scores": scores}  # counted from 1
    correct = evaluation.outcomes["correct"]  # per problem, by the strict (primary) reading
    assert len(correct) == 3 and sum(correct) / 3 == scores["accuracy_strict"]
    assert {r["evaluation"] for r in rows} == {1}


@pytest.mark.parametrize("extraction", ["both", "lm-eval"])
def test_evaluate_reports_the_harness_reading_against_the_whole_solution(
    tiny_lm, tmp_path, extraction
):
    """task_params extraction: the harness's exact match of the very completions dumped,
    against GSM8K's whole solution text (`reference`)."""
    from lorabench.tasks.gsm8k import accuracy, extract_answer
    from lorabench.tasks.gsm8k_lm_eval import lm_eval_accuracy, lm_eval_correct

    dump = tmp_path / "gens.jsonl"
    task = Gsm8k(
        settings(
            tiny_lm,
            eval_data=str(gsm8k_hub_folder(tmp_path)),
            max_new_tokens=6,
            dump_generations=str(dump),
            extraction=extraction,
        )
    )
    evaluation = task.evaluate(task.load_model(), [task.collate_eval(task.load("validation"))])
    rows = [json.loads(line) for line in dump.read_text().splitlines()][:-1]
    assert [r["reference"] for r in rows] == [r["answer"] for r in GSM8K_ROWS]
    completions, references = [r["completion"] for r in rows], [r["reference"] for r in rows]
    harness = {
        "accuracy_lm_eval_strict": lm_eval_accuracy(completions, references, "strict"),
        "accuracy_lm_eval_flexible": lm_eval_accuracy(completions, references, "flexible"),
    }
    if extraction == "both":
        golds = [r["gold"] for r in rows]
        ours = {
            "accuracy_strict": accuracy(completions, golds, "strict"),
            "accuracy_flexible": accuracy(completions, golds, "flexible"),
        }
        assert evaluation.scores == {**ours, **harness}
        assert evaluation.outcomes["correct"] == [  # lorabench's strict reading stays primary
            extract_answer(c, "strict") == g for c, g in zip(completions, golds, strict=True)
        ]
    else:
        assert evaluation.scores == {
            "accuracy_strict": harness["accuracy_lm_eval_strict"],
            "accuracy_flexible": harness["accuracy_lm_eval_flexible"],
            **harness,
        }
        assert evaluation.outcomes["correct"] == [
            lm_eval_correct(c, r, "strict") for c, r in zip(completions, references, strict=True)
        ]


# --- task definitions -----------------------------------------------------------------------


def test_gsm8k_defaults_follow_the_paper():
    info = get_task_info("gsm8k")
    d = info.defaults
    assert (info.family, info.primary_metric, info.needs_download) == (
        "nlg",
        "accuracy_strict",
        True,
    )
    assert info.metrics == ("accuracy_strict", "accuracy_flexible")
    assert (d.model, d.max_length, d.batch_size, d.schedule, d.train_size, d.epochs) == (
        "meta-llama/Llama-3.1-8B",
        1024,
        64,
        "cosine",
        100_000,
        1,
    )
    assert d.targets == (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    params = build_task_params("gsm8k")
    assert (params.data, params.query_field, params.response_field) == (
        "meta-math/MetaMathQA",
        "query",
        "response",
    )


def test_gsm8k_mini_split_is_fixed_and_disjoint():
    train, held_out = embedded_gsm8k_split()
    assert (len(train), len(held_out)) == (1000, 319)
    questions = {r["question"] for r in train}
    assert not questions & {r["question"] for r in held_out}
    assert embedded_gsm8k_split() == (train, held_out)


def test_gsm8k_mini_scores_every_seed_on_the_same_problems():
    info = get_task_info("gsm8k-mini")
    assert (info.needs_download, info.defaults.model) == (False, SMOLLM2)

    def build(seed):
        return build_task(
            "gsm8k-mini",
            TaskSettings(
                model=SMOLLM2,
                max_length=512,
                seed=seed,
                train_size=6,
                eval_size=5,
                params=build_task_params("gsm8k-mini"),
            ),
        )

    a, b = build(0), build(1)
    assert a._eval_set() == b._eval_set() and len(a._eval_set()) == 5
    train_a, train_b = a.load("train"), b.load("train")
    assert len(train_a) == 6 and train_a != train_b
    # Training responses are in the strict format, calculator annotations removed.
    first = train_a[0]
    labelled = [t for t, lab in zip(first["input_ids"], first["labels"], strict=True) if lab >= 0]
    response = a.tokenizer.decode(labelled, skip_special_tokens=True)
    assert "\n#### " in response and "<<" not in response


def test_gsm8k_mini_select_holds_out_100_training_problems_for_every_seed():
    def build(seed, select_split=True):  # noqa: ANN001, ANN202
        return build_task(
            "gsm8k-mini",
            TaskSettings(model=SMOLLM2, max_length=512, seed=seed, train_size=None, eval_size=5,
                         params=build_task_params("gsm8k-mini"), select_split=select_split),
        )  # fmt: skip

    a, b = build(0), build(1)
    pool, held = a._carve(1000)
    assert len(held) == 100 and not set(held) & set(pool)  # 10% of the 1,000 training problems
    assert b._carve(1000) == (pool, held)  # not the job's seed
    questions = [r["question"] for r in a._train_pool]
    selected = {a._select_set()[i]["prompt"] for i in range(5)}
    assert len(a.load("select")) == 5 and a._select_set() == b._select_set()
    assert selected == {a.format_prompt(questions[i]) for i in held[:5]}
    assert not selected & {r["prompt"] for r in a._eval_set()}
    assert len(a.load("train")) == 900  # train_size draws from the other 900
    today = build(0, select_split=False)  # off: all 1,000, as before
    assert len(today.load("train")) == 1000 and today.load("select") == []
