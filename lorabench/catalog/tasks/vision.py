"""Image classification (IC): CLIP ViT-B/16 on the paper's seven datasets, one task each
(implemented in `lorabench.tasks.vision`, which documents heads, data and splits)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import create_model, field_validator

from lorabench.catalog.task import HubDataset, TaskDefaults, TaskInfo, TaskParams

CLIP_VIT_B16 = "openai/clip-vit-base-patch16"
# LoRAFactory's `--replace-modules vision_model`: every Linear of the vision tower.
CLIP_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
PAPER_BATCH_SIZE = 64  # as the paper's NLG runs
PAPER_WEIGHT_DECAY = 0.01  # AdamW weight decay in the paper's CLIP script (LoRAFactory)
PAPER_STEPS = 1000


@dataclass(frozen=True)
class ImageDataset:
    """One of the paper's IC datasets: where it lives on the hub and how big its splits are."""

    task: str
    title: str
    source: str
    config: str | None
    classes: int
    # The split sizes of the model-merging splits these mirrors carry, behind the default
    # epochs (`paper_epochs`); the task reads whatever the data hold.
    train_rows: int
    test_rows: int


def paper_epochs(train_rows: int, batch_size: int = PAPER_BATCH_SIZE) -> int:
    """LoRAFactory's IC training length: whole epochs of about 1,000 optimizer steps."""
    return max(PAPER_STEPS // math.ceil(train_rows / batch_size), 1)


IC_DATASETS = (
    ImageDataset("ic-stanford-cars", "Stanford Cars", "tanganke/stanford_cars", None,
                 196, 8_144, 8_041),
    ImageDataset("ic-dtd", "DTD", "tanganke/dtd", None, 47, 3_760, 1_880),
    ImageDataset("ic-eurosat", "EuroSAT", "tanganke/eurosat", None, 10, 21_600, 2_700),
    ImageDataset("ic-gtsrb", "GTSRB", "tanganke/gtsrb", None, 43, 26_640, 12_630),
    ImageDataset("ic-resisc45", "RESISC45", "tanganke/resisc45", None, 45, 18_900, 6_300),
    ImageDataset("ic-sun397", "SUN397", "tanganke/sun397", None, 397, 19_850, 19_850),
    ImageDataset("ic-svhn", "SVHN", "ufldl-stanford/svhn", "cropped_digits",
                 10, 73_257, 26_032),
)  # fmt: skip


class ImageTaskParams(TaskParams):
    """Where the images come from and which head classifies them (one subclass per dataset
    sets the hub defaults)."""

    data: str  # hub name or local path
    config: str | None = None  # the hub dataset's config (subset) name
    train_split: str = "train"
    eval_split: str = "test"  # the paper scores the test set
    image_column: str = "image"
    label_column: str = "label"
    head: Literal["zeroshot", "linear"] = "zeroshot"
    prompt: str = "a photo of a {}"  # zeroshot: "{}" becomes each class name
    class_names: tuple[str, ...] | None = None  # instead of the label feature's names

    @field_validator("prompt")
    @classmethod
    def _has_slot(cls, prompt: str) -> str:
        if "{}" not in prompt:
            raise ValueError("must contain {} where the class name goes")
        return prompt

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        return (HubDataset(self.data, self.config),)


def _params_cls(dataset: ImageDataset) -> type[ImageTaskParams]:
    name = "".join(part.title() for part in dataset.task.split("-")) + "Params"
    return create_model(
        name,
        __base__=ImageTaskParams,
        data=(str, dataset.source),
        config=(str | None, dataset.config),
    )


def _info(dataset: ImageDataset) -> TaskInfo:
    return TaskInfo(
        name=dataset.task,
        family="ic",
        primary_metric="accuracy",
        metrics=("accuracy", "macro_f1"),
        defaults=TaskDefaults(
            model=CLIP_VIT_B16,
            targets=CLIP_TARGETS,
            max_length=77,  # CLIP's text context, for the class prompts
            batch_size=PAPER_BATCH_SIZE,
            epochs=paper_epochs(dataset.train_rows),
            schedule="cosine",
            weight_decay=PAPER_WEIGHT_DECAY,
        ),
        needs_download=True,
        summary=(
            f"{dataset.title} ({dataset.classes} classes; {dataset.train_rows:,} train / "
            f"{dataset.test_rows:,} test images) on CLIP ViT-B/16, test-set accuracy"
        ),
        implementation="lorabench.tasks.vision",
        params_cls=_params_cls(dataset),
        train_rows=dataset.train_rows,
    )


TASKS = tuple(_info(dataset) for dataset in IC_DATASETS)
