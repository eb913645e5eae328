"""GSM8K: `gsm8k`, the paper's maths setting, and `gsm8k-mini`, an offline smoke setup
(implemented in `lorabench.tasks.gsm8k`, which documents both)."""

from __future__ import annotations

from pydantic import Field

from lorabench.catalog.task import TaskDefaults, TaskInfo
from lorabench.catalog.tasks._models import SMOLLM2
from lorabench.catalog.tasks._nlg import (
    LLAMA_TARGETS,
    PAPER_NLG_DEFAULTS,
    GenerationParams,
    InstructionDataParams,
)


class Gsm8kParams(InstructionDataParams):
    data: str = "meta-math/MetaMathQA"
    eval_data: str = "openai/gsm8k"
    eval_config: str | None = "main"
    eval_split: str = "test"
    max_new_tokens: int = Field(512, gt=0)
    eval_batch_size: int = Field(32, gt=0)


class Gsm8kMiniParams(GenerationParams):
    max_new_tokens: int = Field(256, gt=0)
    eval_batch_size: int = Field(16, gt=0)


_METRICS = ("accuracy_strict", "accuracy_flexible")

GSM8K = TaskInfo(
    name="gsm8k",
    family="nlg",
    primary_metric="accuracy_strict",
    metrics=_METRICS,
    defaults=PAPER_NLG_DEFAULTS,
    needs_download=True,
    summary="MetaMathQA (100k) -> GSM8K test, Llama-3.1-8B: the paper's maths setting",
    implementation="lorabench.tasks.gsm8k",
    params_cls=Gsm8kParams,
)

GSM8K_MINI = TaskInfo(
    name="gsm8k-mini",
    family="nlg",
    primary_metric="accuracy_strict",
    metrics=_METRICS,
    defaults=TaskDefaults(
        model=SMOLLM2,
        targets=LLAMA_TARGETS,
        max_length=320,  # whole for ~95% of the rows (median 178 tokens with the template)
        batch_size=8,
        epochs=1,
        schedule="cosine",
        train_size=128,
        eval_size=32,
    ),
    needs_download=False,
    summary="SMOKE test: SmolLM2-135M on embedded GSM8K rows (offline; accuracy near zero)",
    implementation="lorabench.tasks.gsm8k",
    params_cls=Gsm8kMiniParams,
)

TASKS = (GSM8K, GSM8K_MINI)
