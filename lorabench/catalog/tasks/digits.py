"""`digits`: EfficientNet-Lite0 on scikit-learn's 8x8 digits, the offline image task
(implemented in `lorabench.tasks.digits`)."""

from pydantic import Field

from lorabench.catalog.task import TaskDefaults, TaskInfo, TaskParams

EFFICIENTNET_LITE0 = "efficientnet-lite0"


class DigitsParams(TaskParams):
    # Lite0 downsamples 32x: 48 px leaves a 2x2 final map. LoRA reached 97.2% in 2 epochs at
    # 48 px (95.6% at 32 px); compute grows with the pixel count, ~22x at the native 224 px.
    image_size: int = Field(48, ge=32, le=512)


DIGITS = TaskInfo(
    name="digits",
    family="ic",
    primary_metric="accuracy",
    metrics=("accuracy", "macro_f1"),
    defaults=TaskDefaults(
        model=EFFICIENTNET_LITE0,
        targets=("linear",),
        max_length=1,  # no text: unused
        batch_size=32,
        epochs=2,
        schedule="cosine",
        train_size=None,
        eval_size=None,
    ),
    needs_download=False,
    summary=(
        "10-class 8x8 digits (scikit-learn) on EfficientNet-Lite0, adapters on its 1x1 "
        "convolutions (embedded, offline; an image-classification task)"
    ),
    implementation="lorabench.tasks.digits",
    params_cls=DigitsParams,
    train_rows=1_437,  # the 80% of 1,797 digits that is not test (select is carved from it)
)

TASKS = (DIGITS,)
