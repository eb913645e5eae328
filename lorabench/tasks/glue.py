"""The nine GLUE tasks on RoBERTa-base, set up as the paper runs them (Appendix C, NLU).

Paper settings, kept as the task defaults: RoBERTa-base, max length 256, batch 32, 10 epochs,
linear decay with 3% warm-up, no weight decay, fp32, the best epoch's score. GLUE's test
labels are hidden (-1), so every task scores on validation; MNLI on both of its validation
sets, with the matched one as the task's score (the number GLUE papers, LoRA's included,
print as "MNLI"; the mismatched one is reported beside it).

Splits: `test` is GLUE's validation (both sets for MNLI), `eval_size` rows of each by a fixed
draw. `select` is carved from GLUE's train split: 10%, at most 1,000 rows, stratified by label
(STS-B: a plain fixed draw), e.g. RTE 249, MRPC 367, CoLA 855, SST-2/QNLI/QQP/MNLI 1,000;
`eval_size` of them are scored, and `train_size` draws from the rest. Select is scored by the
task's metrics (MNLI's, drawn from its training genres, as `accuracy_matched`). Outcomes are
each example's prediction and label on the set the primary metric reads (MNLI: matched).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorabench.catalog.tasks.glue import (
    ENCODER_TARGETS,
    GLUE,
    ROBERTA_BASE,
    SPECS,
    GlueParams,
    GlueSpec,
    task_name,
)
from lorabench.tasks.base import (
    Batch,
    Evaluation,
    TaskInfo,
    TaskSettings,
    get_task_info,
    register_task,
    split_name,
)
from lorabench.tasks.glue_metrics import score
from lorabench.tasks.models import base_dtype, resolve_model
from lorabench.tasks.selection import carve
from lorabench.tasks.sources import DataSourceError, load_split

__all__ = [
    "ENCODER_TARGETS",
    "GLUE",
    "ROBERTA_BASE",
    "SPECS",
    "GlueDataError",
    "GlueParams",
    "GlueSpec",
    "GlueTask",
    "task_name",
]

# Subsets (train_size / eval_size) are drawn with a fixed seed, whatever the job's seed, so
# every job of a sweep sees the same examples.
_SUBSET_SEED = 0
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class GlueDataError(DataSourceError):
    """GLUE data that loads but cannot be used (missing columns, hidden labels ...)."""


class GlueTask:
    """A sequence classifier (a regressor for STS-B) with a new head on one GLUE subtask."""

    head_modules = ("classifier",)
    eval_batch_size = None

    def __init__(self, spec: GlueSpec, info: TaskInfo, settings: TaskSettings) -> None:
        from transformers import AutoTokenizer

        self.spec, self.info, self.settings = spec, info, settings
        params = settings.params
        self.params = params if isinstance(params, GlueParams) else GlueParams()
        if Path(self.params.data).expanduser().is_file():
            raise GlueDataError(
                f"task {info.name!r}: data={self.params.data!r} is a single file, which would "
                "serve as both train and validation; give a folder laid out like the hub "
                f"repository {GLUE} (or a DatasetDict saved with save_to_disk)"
            )
        self._model_path = resolve_model(settings.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self._model_path)

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification, logging

        spec = self.spec
        labels = spec.label_names or ("score",)
        verbosity = logging.get_verbosity()
        # The new head (and a pretraining head left unused) is reported on every load.
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        try:
            return AutoModelForSequenceClassification.from_pretrained(
                self._model_path,
                dtype=base_dtype(self.settings.base_dtype, self._model_path),
                num_labels=spec.num_labels,
                problem_type="regression" if spec.regression else "single_label_classification",
                id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)},
                # A checkpoint with another task's head gets this task's new head instead.
                ignore_mismatched_sizes=True,
            )
        finally:
            logging.set_verbosity(verbosity)

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        try:
            split = split_name(split)
        except ValueError as error:
            raise GlueDataError(
                f"task {self.info.name!r}: {error} (GLUE's test labels are hidden, so `test` "
                "is GLUE's validation)"
            ) from None
        if split == "test":
            examples: list[dict[str, Any]] = []
            for group, (name, _) in enumerate(self.spec.validation):
                dataset, where = self._open(name)
                examples += self._encode(
                    *self._read(dataset, where, self.settings.eval_size), group
                )
            return examples
        dataset, where = self._open("train")
        rows = list(range(len(dataset)))
        if self.settings.select_split:
            labels = None if self.spec.regression else list(dataset["label"])
            train, select = carve(rows, labels)
            rows = train if split == "train" else select
        elif split == "select":
            return []
        size = self.settings.train_size if split == "train" else self.settings.eval_size
        return self._encode(*self._read(dataset, where, size, rows), 0)

    def _open(self, split: str) -> tuple[Any, str]:
        """One split of the data with its columns checked, and how messages name it."""
        spec, data = self.spec, self.params.data
        config = self.params.config or spec.config
        dataset = load_split(data, split, config=config)
        where = f"{data!r} (config {config!r}, split {split!r})"
        needed = [*spec.text_fields, "label"]
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            raise GlueDataError(
                f"{where} lacks column(s) {', '.join(missing)}; GLUE {spec.config} needs "
                f"{', '.join(needed)}; it has {', '.join(dataset.column_names) or 'none'}"
            )
        if len(dataset) == 0:
            raise GlueDataError(f"{where} has no rows")
        return dataset, where

    def _read(
        self, dataset: Any, where: str, size: int | None, rows: list[int] | None = None
    ) -> tuple[list[list[str]], list[float]]:
        """Texts and labels of `size` of `rows` (None: every row), drawn by a fixed seed."""
        spec = self.spec
        rows = list(range(len(dataset))) if rows is None else rows
        if size is not None and size < len(rows):
            picked = random.Random(_SUBSET_SEED).sample(range(len(rows)), size)
            rows = sorted(rows[i] for i in picked)
        if len(rows) < len(dataset):
            dataset = dataset.select(rows)
        columns = dataset.select_columns([*spec.text_fields, "label"]).to_dict()
        texts = [columns[field] for field in spec.text_fields]
        for field, values in zip(spec.text_fields, texts, strict=True):
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise GlueDataError(f"{where}: row {bad} has {field}={values[bad]!r}, not text")
        return texts, self._labels(columns["label"], where)

    def _labels(self, labels: list[Any], where: str) -> list[float]:
        if any(v == -1 for v in labels):
            raise GlueDataError(
                f"{where} has hidden labels (-1), as GLUE's test splits do; train and score "
                "on splits with labels"
            )
        if self.spec.regression:
            bad = next((v for v in labels if not _is_number(v) or not math.isfinite(v)), None)
            if bad is not None:
                raise GlueDataError(f"{where}: label {bad!r} is not a finite number")
            return [float(v) for v in labels]
        n = self.spec.num_labels
        bad = next((v for v in labels if not isinstance(v, int) or not 0 <= v < n), None)
        if bad is not None:
            raise GlueDataError(
                f"{where}: label {bad!r} is not a class id 0..{n - 1} "
                f"({', '.join(self.spec.label_names)})"
            )
        return labels

    def _encode(
        self, texts: list[list[str]], labels: list[float], group: int
    ) -> list[dict[str, Any]]:
        # Pairs are truncated longest-first, as Hugging Face's GLUE example does.
        encoded = self.tokenizer(*texts, truncation=True, max_length=self.settings.max_length)
        keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
        return [
            {**{k: encoded[k][i] for k in keys}, "label": label, "group": group}
            for i, label in enumerate(labels)
        ]

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        keys = [k for k in ("input_ids", "token_type_ids") if k in examples[0]]
        batch = dict(self.tokenizer.pad({k: [e[k] for e in examples] for k in keys},
                                        return_tensors="pt"))  # fmt: skip
        dtype = torch.float32 if self.spec.regression else torch.long
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=dtype)
        return batch

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        batch = self.collate(examples)
        batch["group"] = torch.tensor([e["group"] for e in examples])
        return batch

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(**batch).loss

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        # Select examples all come from GLUE's train split: group 0, scored under its names.
        groups = 1 if split_name(split) == "select" else len(self.spec.validation)
        labels: list[list[float]] = [[] for _ in range(groups)]
        predictions: list[list[float]] = [[] for _ in range(groups)]
        for batch in batches:
            logits = model(**{k: batch[k] for k in _INPUTS if k in batch}).logits.float()
            if self.spec.regression:
                predicted = logits.squeeze(-1).tolist()
            else:
                predicted = logits.argmax(dim=-1).tolist()
            for group, label, value in zip(batch["group"].tolist(), batch["labels"].tolist(),
                                           predicted, strict=True):  # fmt: skip
                labels[group].append(label)
                predictions[group].append(value)
        scores: dict[str, float] = {}
        for group, (_, suffix) in enumerate(self.spec.validation[:groups]):
            part = score(self.spec.metrics, labels[group], predictions[group])
            scores.update({f"{name}{suffix}": value for name, value in part.items()})
        # Group 0 is the set the primary metric reads (MNLI: matched).
        return Evaluation(scores, {"prediction": predictions[0], "target": labels[0]})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


for _spec in SPECS:
    _task_info = get_task_info(task_name(_spec))
    register_task(_task_info, functools.partial(GlueTask, _spec, _task_info))
