"""Image classification (IC): CLIP ViT-B/16 on the paper's seven datasets.

The paper trains CLIP-ViT-B/16 on Stanford Cars, DTD, EuroSAT, GTSRB, RESISC45, SUN397 and
SVHN and scores accuracy on each test set. Its code (LoRAFactory's CLIP script) adapts every
nn.Linear under `vision_model` (q/k/v/out projections and MLP fc1/fc2 of all 12 blocks),
keeps the text tower frozen and classifies zero-shot style: logits are CLIP's image-text
similarities with the prompts "a photo of a {class name}". That is `head="zeroshot"`, the
default; `head="linear"` puts a new, fully trained linear layer on the pooled image features
instead. Its training length, about 1,000 optimizer steps (epochs = max(1000 // steps per
epoch, 1), best epoch on the test set), sets each task's default epochs below.

Data come from the Hugging Face mirrors that model-merging work uses (columns `image`, an
Image feature, and `label`, a ClassLabel), or from any local copy `load_split` reads: a folder
laid out like the hub repository, an `imagefolder` tree (<root>/<split>/<class>/*.png),
parquet or `save_to_disk` output. Images are decoded and preprocessed per batch by the
checkpoint's own image processor (resize, centre crop, normalise): SVHN's 73,257 training
images preprocessed up front would take ~44 GB.

Splits: `test` is the params' `eval_split` (the paper's test set), `eval_size` of it by a
fixed stratified draw. `select` is carved from `train_split`: 10%, stratified, at most 1,000
images (e.g. DTD 376, EuroSAT 1,000), `eval_size` of them scored, like test; `train_size`
draws from the rest. Select is scored like test (accuracy, macro-F1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lorabench.catalog.tasks.vision import (
    CLIP_TARGETS,
    CLIP_VIT_B16,
    IC_DATASETS,
    PAPER_BATCH_SIZE,
    PAPER_STEPS,
    PAPER_WEIGHT_DECAY,
    ImageDataset,
    ImageTaskParams,
    paper_epochs,
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
from lorabench.tasks.metrics import classification_metrics
from lorabench.tasks.models import base_dtype, resolve_model
from lorabench.tasks.selection import carve
from lorabench.tasks.sources import DataSourceError, load_split

__all__ = [
    "CLIP_TARGETS",
    "CLIP_VIT_B16",
    "IC_DATASETS",
    "IC_TASKS",
    "PAPER_BATCH_SIZE",
    "PAPER_STEPS",
    "PAPER_WEIGHT_DECAY",
    "ClipLinearClassifier",
    "ClipZeroShotClassifier",
    "ImageClassification",
    "ImageDataset",
    "ImageTaskParams",
    "PixelClassifierSteps",
    "evaluate_classifier",
    "fixed_subset",
    "paper_epochs",
    "prompt_embeddings",
]

_SUBSET_SEED = 0  # train_size/eval_size subsets are the same images whatever the job's seed


def fixed_subset(indices: list[int], labels: Sequence[int], size: int | None) -> list[int]:
    """`size` of `indices`, stratified by label where possible, by a fixed seed."""
    if size is None or size >= len(indices):
        return indices
    from sklearn.model_selection import train_test_split

    try:
        subset, _ = train_test_split(
            indices,
            train_size=size,
            random_state=_SUBSET_SEED,
            stratify=[labels[i] for i in indices],
        )
    except ValueError:  # fewer rows than classes, or a class with one member
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(_SUBSET_SEED))
        subset = [indices[i] for i in order[:size].tolist()]
    return sorted(subset)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, batches: Iterable[Batch]) -> Evaluation:
    """Accuracy and macro-F1 of `model(pixel_values)` logits over `batches`, and each
    example's prediction and label."""
    labels: list[int] = []
    predictions: list[int] = []
    for batch in batches:
        predictions += model(batch["pixel_values"]).argmax(dim=-1).tolist()
        labels += batch["labels"].tolist()
    return Evaluation(classification_metrics(labels, predictions),
                      {"prediction": predictions, "target": labels})  # fmt: skip


class PixelClassifierSteps:
    """Evaluation batches, loss and scoring of a task whose batches are pixel_values + labels
    and whose model returns logits (the CLIP tasks and digits)."""

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return self.collate(examples)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch["pixel_values"]), batch["labels"])

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        return evaluate_classifier(model, batches)


class ClipLinearClassifier(nn.Module):
    """CLIP's vision tower and a new linear layer on its pooled (CLS, post-LayerNorm) output."""

    def __init__(self, vision_model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.classifier = nn.Linear(vision_model.config.hidden_size, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.vision_model(pixel_values=pixel_values).pooler_output)


class ClipZeroShotClassifier(nn.Module):
    """CLIP's image-text logits against fixed class-prompt embeddings.

    The text tower is frozen and never adapted, so each prompt's embedding is computed once;
    `class_embeddings` holds them normalised and multiplied by CLIP's logit scale, so the
    logits equal CLIPModel's `logits_per_image`.
    """

    def __init__(
        self, vision_model: nn.Module, visual_projection: nn.Module, class_embeddings: torch.Tensor
    ) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection
        # Derived from the frozen checkpoint on every load: kept out of checkpoints.
        self.register_buffer("class_embeddings", class_embeddings, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        image = F.normalize(self.visual_projection(pooled), dim=-1)
        return image @ self.class_embeddings.to(image.dtype).T


@contextmanager
def _quiet_transformers():
    # New heads, unused text weights and the PIL-processor fallback are reported on every load.
    from transformers import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()


@torch.no_grad()
def prompt_embeddings(clip: nn.Module, tokenizer: Any, prompts: list[str], max_length: int):
    """Normalised text embeddings of `prompts` times CLIP's logit scale, (len(prompts), dim)."""
    clip.eval()
    chunks = []
    for start in range(0, len(prompts), 256):
        tokens = tokenizer(
            prompts[start : start + 256],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        pooled = clip.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
        chunks.append(clip.text_projection(pooled))
    return F.normalize(torch.cat(chunks), dim=-1) * clip.logit_scale.exp()


class ImageClassification(PixelClassifierSteps):
    """One IC dataset on a CLIP vision tower; examples are row references, decoded per batch."""

    eval_batch_size = None

    def __init__(self, settings: TaskSettings, *, info: TaskInfo) -> None:
        from transformers import AutoImageProcessor

        self.info = info
        self.settings = settings
        params = settings.params
        self.params: ImageTaskParams = (
            params if isinstance(params, info.params_cls) else info.params_cls()
        )
        self.head_modules = ("classifier",) if self.params.head == "linear" else ()
        self._model_path = resolve_model(settings.model)
        with _quiet_transformers():
            self.processor = AutoImageProcessor.from_pretrained(self._model_path)
        # The two datasets read (examples name theirs: select rows live in the train one).
        self.splits = {"train": self.params.train_split, "test": self.params.eval_split}
        self._images: dict[str, Any] = {}
        self.labels: dict[str, list[int]] = {}
        label_features = {}
        for key, split in self.splits.items():
            dataset = self._open(split)
            self._images[key] = dataset.select_columns([self.params.image_column])
            self.labels[key] = self._read_labels(dataset, split)
            label_features[key] = dataset.features[self.params.label_column]
        self.class_names = self._class_names(label_features)
        train_labels, test_labels = self.labels["train"], self.labels["test"]
        train = list(range(len(train_labels)))
        train, select = carve(train, train_labels) if settings.select_split else (train, [])
        # split -> (dataset, rows of it)
        self.rows = {
            "train": ("train", fixed_subset(train, train_labels, settings.train_size)),
            "select": ("train", fixed_subset(select, train_labels, settings.eval_size)),
            "test": ("test", fixed_subset(list(range(len(test_labels))), test_labels,
                                          settings.eval_size)),
        }  # fmt: skip

    def _open(self, split: str) -> Any:
        import datasets

        p = self.params
        dataset = load_split(p.data, split, config=p.config)
        for role, column in (("image_column", p.image_column), ("label_column", p.label_column)):
            if column not in dataset.column_names:
                raise DataSourceError(
                    f"{p.data!r} split {split!r} has no column {column!r} (task_params "
                    f"{role}); its columns: {', '.join(dataset.column_names)}"
                )
        if not isinstance(dataset.features[p.image_column], datasets.Image):
            try:  # e.g. a column of file paths
                dataset = dataset.cast_column(p.image_column, datasets.Image())
            except (TypeError, ValueError) as error:
                raise DataSourceError(
                    f"{p.data!r}: column {p.image_column!r} does not hold images: {error}"
                ) from None
        return dataset

    def _read_labels(self, dataset: Any, split: str) -> list[int]:
        column = self.params.label_column
        values = list(dataset[column])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DataSourceError(
                f"{self.params.data!r} split {split!r}: column {column!r} must hold class ids "
                "(a ClassLabel or integers)"
            )
        return values

    def _class_names(self, features: dict[str, Any]) -> tuple[str, ...]:
        import datasets

        p = self.params
        train, evaluation = features["train"], features["test"]
        if p.class_names is not None:
            names = p.class_names
        elif isinstance(train, datasets.ClassLabel):
            names = tuple(train.names)
            if isinstance(evaluation, datasets.ClassLabel) and evaluation.names != train.names:
                raise DataSourceError(
                    f"{p.data!r}: splits {p.train_split!r} and {p.eval_split!r} name their "
                    "classes differently"
                )
        else:
            every = self.labels["train"] + self.labels["test"]
            names = tuple(str(i) for i in range(max(every, default=-1) + 1))
        for key, labels in self.labels.items():
            bad = [y for y in labels if not 0 <= y < len(names)]
            if bad:
                raise DataSourceError(
                    f"{p.data!r} split {self.splits[key]!r}: label {bad[0]} is outside the "
                    f"{len(names)} classes"
                )
        return names

    def load_model(self) -> nn.Module:
        from transformers import AutoConfig, AutoTokenizer, CLIPModel, CLIPVisionModel

        dtype = base_dtype(self.settings.base_dtype, self._model_path)
        with _quiet_transformers():
            if self.params.head == "linear":
                vision = CLIPVisionModel.from_pretrained(self._model_path, dtype=dtype)
                return ClipLinearClassifier(vision, len(self.class_names))
            kind = AutoConfig.from_pretrained(self._model_path).model_type
            if kind != "clip":
                raise ValueError(
                    f"model {self.settings.model!r} is a {kind!r} checkpoint; the zeroshot head "
                    "needs a full CLIP one (text tower and tokenizer), or set task_params "
                    "head='linear'"
                )
            clip = CLIPModel.from_pretrained(self._model_path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(self._model_path)
        prompts = [self.params.prompt.replace("{}", name) for name in self.class_names]
        weights = prompt_embeddings(clip, tokenizer, prompts, self.settings.max_length)
        return ClipZeroShotClassifier(clip.vision_model, clip.visual_projection, weights)

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        dataset, rows = self.rows[split_name(split)]
        labels = self.labels[dataset]
        return [{"split": dataset, "row": row, "label": labels[row]} for row in rows]

    def pixel_values(self, examples: Sequence[dict[str, Any]]) -> torch.Tensor:
        images: list[Any] = [None] * len(examples)
        by_split: dict[str, list[int]] = {}
        for position, example in enumerate(examples):
            by_split.setdefault(example["split"], []).append(position)
        for split, positions in by_split.items():
            rows = [examples[p]["row"] for p in positions]
            # One Arrow read per batch; only the image column is decoded.
            fetched = self._images[split][rows][self.params.image_column]
            for position, image in zip(positions, fetched, strict=True):
                images[position] = image.convert("RGB")
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return {
            "pixel_values": self.pixel_values(examples),
            "labels": torch.tensor([e["label"] for e in examples]),
        }


def _register(dataset: ImageDataset) -> TaskInfo:
    info = get_task_info(dataset.task)
    register_task(info, partial(ImageClassification, info=info))
    return info


IC_TASKS = {dataset.task: _register(dataset) for dataset in IC_DATASETS}
