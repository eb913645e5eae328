"""The seven CLIP image-classification tasks, on tiny local fixtures in the hub formats."""

import json
from pathlib import Path

import pytest
import torch
from helpers import only_job_metrics, plan_and_work
from image_fixtures import (
    IMAGE_SIZE,
    class_colour,
    make_image,
    write_hub_dataset,
    write_imagefolder,
    write_tiny_clip,
)

from lorabench.config import ConfigError, resolve_job
from lorabench.tasks import (
    InvalidTaskParams,
    TaskSettings,
    build_task,
    build_task_params,
    get_task_info,
)
from lorabench.tasks.sources import DataSourceError
from lorabench.tasks.vision import (
    CLIP_TARGETS,
    IC_DATASETS,
    ClipZeroShotClassifier,
    fixed_subset,
    paper_epochs,
)
from lorabench.variants import inject

NAMES = ["red car", "blue car", "green car"]
SPLITS = {"train": 4, "test": 2}  # per class
# The hub datasets the tasks read, with the config each needs and the epochs the ~1,000-step
# rule gives at batch 64: ceil(rows / 64) steps per epoch, 1000 // that, at least 1.
HUB = {
    "ic-stanford-cars": ("tanganke/stanford_cars", None, 7),  # 128 steps per epoch
    "ic-dtd": ("tanganke/dtd", None, 16),  # 59
    "ic-eurosat": ("tanganke/eurosat", None, 2),  # 338
    "ic-gtsrb": ("tanganke/gtsrb", None, 2),  # 417
    "ic-resisc45": ("tanganke/resisc45", None, 3),  # 296
    "ic-sun397": ("tanganke/sun397", None, 3),  # 311
    "ic-svhn": ("ufldl-stanford/svhn", "cropped_digits", 1),  # 1,145
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    words = ["a", "photo", "of", "an", "the", "red", "blue", "green", "car", "cat", "dog"]
    return write_tiny_clip(tmp_path_factory.mktemp("clip"), words=words)


@pytest.fixture(scope="module")
def hub_data(tmp_path_factory):
    """One fixture per task, each laid out as that task's hub dataset (config folder too)."""
    root = tmp_path_factory.mktemp("hub")
    return {
        task: write_hub_dataset(root / task, names=NAMES, splits=SPLITS, config=config or "default")
        for task, (_, config, _) in HUB.items()
    }


def make(task, model, **params):
    return build_task(
        task,
        TaskSettings(
            model=str(model),
            max_length=77,
            seed=params.pop("seed", 0),
            train_size=params.pop("train_size", None),
            eval_size=params.pop("eval_size", None),
            select_split=params.pop("select_split", True),
            params=build_task_params(task, {k: str(v) if isinstance(v, Path) else v
                                            for k, v in params.items()}),
        ),
    )  # fmt: skip


def test_the_seven_tasks_are_registered_with_the_papers_settings():
    assert sorted(d.task for d in IC_DATASETS) == sorted(HUB)
    for task, (source, config, epochs) in HUB.items():
        info = get_task_info(task)
        assert (info.family, info.primary_metric, info.needs_download) == ("ic", "accuracy", True)
        d = info.defaults
        assert d.model == "openai/clip-vit-base-patch16"
        assert d.targets == ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
        assert (d.batch_size, d.schedule, d.epochs) == (64, "cosine", epochs), task
        assert (d.train_size, d.eval_size) == (None, None)
        params = info.params_cls()
        assert (params.data, params.config) == (source, config)
        assert (params.train_split, params.eval_split, params.head) == ("train", "test", "zeroshot")
        assert (params.image_column, params.label_column) == ("image", "label")
        job = resolve_job({"task": task, "variant": "lora", "lr": 1e-4})
        assert (job.warmup_ratio, job.batch_size, job.schedule) == (0.03, 64, "cosine")


def test_paper_epochs_is_about_a_thousand_steps_in_whole_epochs():
    assert paper_epochs(64) == 1000  # one step per epoch
    assert paper_epochs(65) == 500  # two steps
    assert paper_epochs(8_144) == 7  # 128 steps: 896 in all
    assert paper_epochs(64_000) == 1  # exactly 1,000 steps
    assert paper_epochs(64_001) == 1  # 1,001 steps: still one epoch, never zero
    assert paper_epochs(640, batch_size=32) == 50


@pytest.mark.parametrize("task", sorted(HUB))
def test_every_loader_reads_its_hub_layout_and_classifies_each_image(task, clip, hub_data):
    t = make(task, clip, data=hub_data[task], select_split=False)  # all of the train split
    assert t.class_names == tuple(NAMES)
    train, test = t.load("train"), t.load("validation")
    # "validation" is the test split: the paper scores the test set.
    assert [e["label"] for e in train] == [0, 1, 2] * 4
    assert [e["label"] for e in test] == [0, 1, 2] * 2
    batch = t.collate(train[:5])
    assert batch["pixel_values"].shape == (5, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["labels"].tolist() == [0, 1, 2, 0, 1]
    model = t.load_model()
    assert model(batch["pixel_values"]).shape == (5, 3)
    assert t.head_modules == ()


def test_the_hub_name_goes_through_the_same_loader(clip):
    # Tests run offline: the real names reach datasets.load_dataset and fail there.
    with pytest.raises(DataSourceError, match=r"'ufldl-stanford/svhn' \(config 'cropped_digits'\)"):
        make("ic-svhn", clip)
    with pytest.raises(DataSourceError, match="'tanganke/dtd'"):
        make("ic-dtd", clip)


def test_batches_are_the_checkpoints_processor_output(clip, hub_data, tmp_path):
    from PIL import Image
    from transformers import AutoImageProcessor

    # A flat 64x48 image: resized to 32 on the short side, centre-cropped to 32x32, every pixel
    # (colour / 255 - mean) / std with CLIP's mean and std.
    colour = class_colour(1)
    for split in ("train", "test"):
        for name, size in (("flat", (64, 48)), ("other", (20, 20))):
            (tmp_path / "flat" / split / name).mkdir(parents=True)
            Image.new("RGB", size, colour).save(tmp_path / "flat" / split / name / "0.png")
    t = make("ic-eurosat", clip, data=tmp_path / "flat")
    assert t.class_names == ("flat", "other")
    (flat,) = [e for e in t.load("validation") if e["label"] == 0]
    pixels = t.collate_eval([flat])["pixel_values"]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    expected = (torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255 - mean) / std
    torch.testing.assert_close(pixels, expected.expand(1, 3, 32, 32))
    # Striped, non-square images: batches equal the saved processor's output on the same images.
    t = make("ic-eurosat", clip, data=hub_data["ic-eurosat"], select_split=False)
    images = [make_image(label, i) for i, label in enumerate([0, 1, 2, 0])]
    reference = AutoImageProcessor.from_pretrained(clip)(images=images, return_tensors="pt")
    batch = t.collate(t.load("train")[:4])["pixel_values"]
    torch.testing.assert_close(batch, reference["pixel_values"], rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[3])  # the stripe moved: the images really differ


def test_zeroshot_logits_equal_clips_image_text_logits(clip, hub_data):
    from transformers import AutoTokenizer, CLIPModel

    t = make("ic-gtsrb", clip, data=hub_data["ic-gtsrb"], prompt="the {}")
    model = t.load_model()
    assert isinstance(model, ClipZeroShotClassifier)
    pixels = t.collate(t.load("validation"))["pixel_values"]
    reference = CLIPModel.from_pretrained(clip).eval()
    tokens = AutoTokenizer.from_pretrained(clip)([f"the {n}" for n in NAMES], padding=True,
                                                 return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        expected = reference(pixel_values=pixels, **tokens).logits_per_image
        torch.testing.assert_close(model.eval()(pixels), expected, rtol=1e-5, atol=1e-5)
    # The class embeddings are derived, not trained or checkpointed.
    assert "class_embeddings" not in model.state_dict()


def test_default_targets_wrap_every_vision_linear_and_leave_the_rest_frozen(clip, hub_data):
    t = make("ic-resisc45", clip, data=hub_data["ic-resisc45"])
    model = t.load_model()
    report = inject(model, "lora", targets=CLIP_TARGETS, rank=2, alpha=4, trainable=t.head_modules)
    # 2 blocks x (q, k, v, out, fc1, fc2); the projection into CLIP's joint space stays frozen.
    assert len(report.wrapped) == 12
    assert all(name.startswith("vision_model.encoder.layers.") for name in report.wrapped)
    assert report.trainable_params == report.adapter_params


def test_linear_head_is_new_trained_and_works_on_a_vision_only_checkpoint(tmp_path, hub_data):
    vision = write_tiny_clip(tmp_path / "vision", words=[], vision_only=True)
    t = make("ic-sun397", vision, data=hub_data["ic-sun397"], head="linear")
    assert t.head_modules == ("classifier",)
    model = t.load_model()
    assert (model.classifier.in_features, model.classifier.out_features) == (16, 3)
    report = inject(model, "lora", targets=CLIP_TARGETS, rank=2, alpha=4, trainable=t.head_modules)
    assert report.trainable_params == report.adapter_params + 16 * 3 + 3
    zeroshot = make("ic-sun397", vision, data=hub_data["ic-sun397"])
    with pytest.raises(ValueError, match="needs a full CLIP one .* head='linear'"):
        zeroshot.load_model()


def test_an_imagefolder_tree_and_a_saved_dataset_load_too(tmp_path, clip):
    import datasets

    folder = write_imagefolder(tmp_path / "folder", names=["dog", "cat"],
                               splits={"train": 3, "test": 2})  # fmt: skip
    t = make("ic-dtd", clip, data=folder, select_split=False)
    assert t.class_names == ("cat", "dog")  # the builder sorts the folder names
    assert sorted(e["label"] for e in t.load("train")) == [0, 0, 0, 1, 1, 1]
    assert len(t.load("validation")) == 4
    assert t.collate(t.load("validation"))["pixel_values"].shape == (4, 3, 32, 32)

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {s: datasets.load_dataset(str(folder), split=s) for s in ("train", "test")}
    ).save_to_disk(str(saved))
    t = make("ic-dtd", clip, data=saved)
    assert t.class_names == ("cat", "dog") and len(t.load("train")) == 5  # and 1 select
    assert len(t.load("select")) == 1


def test_subsets_are_stratified_and_the_same_for_every_seed(clip, hub_data):
    t = make("ic-stanford-cars", clip, data=hub_data["ic-stanford-cars"], train_size=6,
             eval_size=3, seed=5)  # fmt: skip
    assert sorted(e["label"] for e in t.load("train")) == [0, 0, 1, 1, 2, 2]
    assert sorted(e["label"] for e in t.load("validation")) == [0, 1, 2]
    other = make("ic-stanford-cars", clip, data=hub_data["ic-stanford-cars"], train_size=6,
                 eval_size=3, seed=0)  # fmt: skip
    assert t.load("train") == other.load("train")
    # Fewer rows than classes cannot be stratified: a fixed random draw instead.
    labels = [0, 1, 2, 3, 4, 5] * 2
    assert fixed_subset(list(range(12)), labels, 4) == fixed_subset(list(range(12)), labels, 4)
    assert len(set(fixed_subset(list(range(12)), labels, 4))) == 4


def test_select_is_carved_from_the_train_split_fixed_and_disjoint(clip, hub_data, tmp_path):
    def rows(t, split):  # noqa: ANN001, ANN202
        return {(e["split"], e["row"]) for e in t.load(split)}

    t = make("ic-dtd", clip, data=hub_data["ic-dtd"], seed=4)
    train, select, test = rows(t, "train"), rows(t, "select"), rows(t, "test")
    assert len(select) == 1 and {s for s, _ in select} == {"train"}  # 10% of 12 images
    assert not select & train and len(train | select) == 12
    assert {s for s, _ in test} == {"test"} and len(test) == 6  # the test split, as before
    assert rows(make("ic-dtd", clip, data=hub_data["ic-dtd"]), "select") == select
    today = make("ic-dtd", clip, data=hub_data["ic-dtd"], select_split=False)
    assert rows(today, "train") == {("train", i) for i in range(12)} and not today.load("select")
    # 10% of a larger split, stratified by class.
    big = write_hub_dataset(tmp_path / "big", names=NAMES, splits={"train": 20, "test": 1})
    t = make("ic-eurosat", clip, data=big)
    assert sorted(e["label"] for e in t.load("select")) == [0, 0, 1, 1, 2, 2]
    assert len(t.load("train")) == 54


def test_user_mistakes_get_messages_naming_the_problem(tmp_path, clip, hub_data):
    with pytest.raises(InvalidTaskParams, match="prompt.*must contain"):
        build_task_params("ic-dtd", {"prompt": "a photo"})
    with pytest.raises(ConfigError, match="unknown parameter 'dataset'; allowed: data, config"):
        resolve_job({"task": "ic-dtd", "variant": "lora", "lr": 1e-4,
                     "task_params": {"dataset": "x"}})  # fmt: skip
    with pytest.raises(ConfigError, match="head"):
        resolve_job({"task": "ic-dtd", "variant": "lora", "lr": 1e-4,
                     "task_params": {"head": "mlp"}})  # fmt: skip
    renamed = write_hub_dataset(tmp_path / "renamed", names=NAMES, splits=SPLITS,
                                image_column="img")  # fmt: skip
    with pytest.raises(DataSourceError, match="no column 'image' .task_params image_column.; "
                                              "its columns: img, label"):  # fmt: skip
        make("ic-dtd", clip, data=renamed)
    assert make("ic-dtd", clip, data=renamed, image_column="img").class_names == tuple(NAMES)
    with pytest.raises(DataSourceError, match="label 2 is outside the 2 classes"):
        make("ic-dtd", clip, data=hub_data["ic-dtd"], class_names=("a", "b"))
    with pytest.raises(DataSourceError, match="cannot load split 'validation'"):
        make("ic-dtd", clip, data=hub_data["ic-dtd"], eval_split="validation")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make("ic-dtd", clip, data=hub_data["ic-dtd"]).load("dev")


@pytest.mark.slow
def test_a_job_trains_and_reports_accuracy_through_plan_and_work(tmp_path, clip, hub_data):
    db = str(tmp_path / "ic.db")
    plan_and_work(db, tmp_path / "runs",
        "--task", "ic-eurosat", "--variant", "lora", "--lr", "1e-3",
        "--model", str(clip), "--batch-size", "4", "--max-steps", "4",
        "--set", f"task_params={{data = {json.dumps(str(hub_data['ic-eurosat']))}}}",
    )  # fmt: skip
    rows = only_job_metrics(db)
    # 12 training images in batches of 4: 3 steps per epoch, so 4 steps span 2 epochs.
    evals = {(r.name, r.epoch): r.value for r in rows if r.split == "eval"}
    assert set(evals) == {(n, e) for n in ("accuracy", "macro_f1") for e in (1, 2)}
    # Accuracy over the 6 test images is a whole number of sixths.
    assert all(round(evals["accuracy", e] * 6, 9) in range(7) for e in (1, 2))
    summary = {r.name: r.value for r in rows if r.split == "summary"}
    assert summary["best_accuracy"] == evals["accuracy", int(summary["best_epoch"])]
    assert summary["total_steps"] == 4
    assert len([r for r in rows if r.split == "train" and r.name == "loss"]) == 4


def test_ic_jobs_take_the_paper_scripts_weight_decay_unless_the_sweep_sets_one():
    from lorabench.config import resolve_job

    assert resolve_job({"task": "ic-dtd", "variant": "lora", "lr": 1e-4}).weight_decay == 0.01
    assert resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4}).weight_decay == 0.0
    own = resolve_job({"task": "ic-dtd", "variant": "lora", "lr": 1e-4, "weight_decay": 0.0})
    assert own.weight_decay == 0.0
