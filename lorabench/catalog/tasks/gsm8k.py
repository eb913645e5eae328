"""GSM8K: `gsm8k`, the paper's maths setting, and `gsm8k-mini`, an offline smoke setup
(implemented in `lorabench.tasks.gsm8k`, which documents both)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lorabench.catalog.task import HubDataset, MetricSpec, TaskDefaults, TaskInfo
from lorabench.catalog.tasks._models import SMOLLM2
from lorabench.catalog.tasks._nlg import (
    LLAMA_TARGETS,
    PAPER_NLG_DEFAULTS,
    GenerationParams,
    InstructionDataParams,
)

# How completions are read (lorabench.tasks.gsm8k documents the difference):
# "lorabench": accuracy_strict/_flexible compare numbers (the default);
# "lm-eval": they are lm-evaluation-harness's strict-match/flexible-extract exact match, the
#   job's primary metric included; accuracy_lm_eval_strict/_flexible repeat them;
# "both": lorabench's reading stays primary and the harness's is recorded beside it as
#   accuracy_lm_eval_strict/_flexible, so one trained job reports both.
# Scoring only, but part of the job's hash like every task param (unset: hash unchanged), so
# "both" is the way to get the two readings without training twice.
Extraction = Literal["lorabench", "lm-eval", "both"]


class Gsm8kParams(InstructionDataParams):
    data: str = "meta-math/MetaMathQA"
    eval_data: str = "openai/gsm8k"
    eval_config: str | None = "main"
    eval_split: str = "test"
    max_new_tokens: int = Field(512, gt=0)
    eval_batch_size: int = Field(32, gt=0)
    extraction: Extraction = "lorabench"

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        return (*super().hub_datasets(task), HubDataset(self.eval_data, self.eval_config))


class Gsm8kMiniParams(GenerationParams):
    max_new_tokens: int = Field(256, gt=0)
    eval_batch_size: int = Field(16, gt=0)
    extraction: Extraction = "lorabench"


_METRICS = ("accuracy_strict", "accuracy_flexible")
# Recorded only under extraction "lm-eval" or "both" (so not in `metrics`, which every job has).
LM_EVAL_METRICS = ("accuracy_lm_eval_strict", "accuracy_lm_eval_flexible")
_LM_EVAL_SPECS = tuple(MetricSpec(name) for name in LM_EVAL_METRICS)

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
    metric_specs=_LM_EVAL_SPECS,
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
    metric_specs=_LM_EVAL_SPECS,
)

TASKS = (GSM8K, GSM8K_MINI)
