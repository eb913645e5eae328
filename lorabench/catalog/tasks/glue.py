"""The nine GLUE tasks on RoBERTa-base, as the paper runs them: one `GlueSpec` per subtask
(implemented in `lorabench.tasks.glue`, which documents the setup)."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.task import HubDataset, TaskDefaults, TaskInfo, TaskParams

ROBERTA_BASE = "FacebookAI/roberta-base"
GLUE = "nyu-mll/glue"
# Every linear layer of every encoder block (attention q/k/v and output, both feed-forward
# layers). "*.layer.*.dense" rather than "dense": RoBERTa's classification head has a `dense`
# of its own, and the head trains in full.
ENCODER_TARGETS = ("query", "key", "value", "*.layer.*.dense")


@dataclass(frozen=True)
class GlueSpec:
    """One GLUE subtask: its hub config, columns, labels and metrics."""

    config: str
    title: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]  # empty: a regression task (STS-B's 0-5 similarity)
    metrics: tuple[str, ...]  # the first is the paper's score for the task
    # (split, suffix of its metric names): MNLI scores two validation sets.
    validation: tuple[tuple[str, str], ...] = (("validation", ""),)
    train_rows: int | None = None  # GLUE's train split (nyu-mll/glue), for plan --dry-run

    @property
    def regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return len(self.label_names) or 1

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"{m}{suffix}" for _, suffix in self.validation for m in self.metrics)


# Metrics as the paper's text names them: MCC for CoLA, Pearson for STS-B, F1 for QQP,
# accuracy for the rest (MRPC included).
SPECS = (
    GlueSpec("cola", "CoLA acceptability", ("sentence",), ("unacceptable", "acceptable"),
             ("matthews_correlation", "accuracy"), train_rows=8_551),
    GlueSpec("sst2", "SST-2 sentiment", ("sentence",), ("negative", "positive"), ("accuracy",),
             train_rows=67_349),
    GlueSpec("mrpc", "MRPC paraphrase", ("sentence1", "sentence2"),
             ("not_equivalent", "equivalent"), ("accuracy", "f1"), train_rows=3_668),
    GlueSpec("qqp", "QQP duplicate questions", ("question1", "question2"),
             ("not_duplicate", "duplicate"), ("f1", "accuracy"), train_rows=363_846),
    GlueSpec("stsb", "STS-B similarity (regression)", ("sentence1", "sentence2"), (),
             ("pearson", "spearmanr"), train_rows=5_749),
    GlueSpec("mnli", "MNLI inference", ("premise", "hypothesis"),
             ("entailment", "neutral", "contradiction"), ("accuracy",),
             (("validation_matched", "_matched"), ("validation_mismatched", "_mismatched")),
             train_rows=392_702),
    GlueSpec("qnli", "QNLI question answering", ("question", "sentence"),
             ("entailment", "not_entailment"), ("accuracy",), train_rows=104_743),
    GlueSpec("rte", "RTE entailment", ("sentence1", "sentence2"),
             ("entailment", "not_entailment"), ("accuracy",), train_rows=2_490),
    GlueSpec("wnli", "WNLI coreference", ("sentence1", "sentence2"),
             ("not_entailment", "entailment"), ("accuracy",), train_rows=635),
)  # fmt: skip


class GlueParams(TaskParams):
    """Where the data comes from."""

    # A hub name, or a local folder laid out like the hub repository (parquet files and a
    # README whose `configs:` list them), or a DatasetDict written by `save_to_disk`.
    data: str = GLUE
    # The dataset config to read; None: the subtask's GLUE name (cola, mnli ...). A plain
    # folder of train/validation files has one config, "default".
    config: str | None = None

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        spec = next(spec for spec in SPECS if task_name(spec) == task)
        return (HubDataset(self.data, self.config or spec.config),)


def task_name(spec: GlueSpec) -> str:
    return f"glue-{spec.config}"


def _info(spec: GlueSpec) -> TaskInfo:
    names = spec.metric_names
    return TaskInfo(
        name=task_name(spec),
        family="nlu",
        primary_metric=names[0],
        metrics=names,
        defaults=TaskDefaults(
            model=ROBERTA_BASE,
            targets=ENCODER_TARGETS,
            max_length=256,
            batch_size=32,
            epochs=10,
            schedule="linear",
        ),
        needs_download=True,
        summary=f"GLUE {spec.title} on RoBERTa-base; scored by {names[0]} on validation",
        implementation="lorabench.tasks.glue",
        params_cls=GlueParams,
        train_rows=spec.train_rows,
    )


TASKS = tuple(_info(spec) for spec in SPECS)
