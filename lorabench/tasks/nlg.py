"""Instruction tuning of causal LMs: the shared base of the generation tasks (GSM8K, HumanEval).

A subclass of `CausalLMTask` says where its training pairs come from (`training_pair`, and
`training_rows` for a source other than `params.data`), which problems it evaluates
(`eval_records`) and how completions score (`score`). The base does the rest: model and
tokenizer, prompt template, tokenisation with the loss on response tokens only, batching,
loss, and evaluation by batched greedy generation.

Training batches (`collate_train`) and the select split's loss batches are padding-free where
the model keeps packed sequences apart (probed once per model, `padding_free.packing_problem`):
examples packed into rows with their own `position_ids`, no attention mask; elsewhere padded
rows in length groups, one forward pass per group; task param `padding_free = false`: padded
rows as before. The loss is the same in all three (see `lorabench.tasks.padding_free`).
`collate` keeps one padded row per example: data-driven inits (EVA, CorDA) read activations
per example.

Splits: `test` is the task's fixed evaluation problems (`eval_records`, the first `eval_size`).
`select` is carved from the training rows by a fixed seed before `train_size` draws the
training set from the rest by the job's seed: 10%, at most 200 rows where select is scored by
generation (`select_records`, the task's own metrics), at most 1,000 where the task scores it by
the held-out response loss (`info.select_metric == "loss"`: one forward pass per row); the
first `eval_size` of them are scored. Outcomes on test: `correct` per problem, by the primary
metric (`correct`), where the task defines it.
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lorabench.catalog.tasks._nlg import (
    LLAMA_TARGETS,
    PAPER_NLG_DEFAULTS,
    GenerationParams,
    InstructionDataParams,
)
from lorabench.tasks.base import Batch, Evaluation, TaskInfo, TaskSettings, split_name
from lorabench.tasks.generation import ensure_pad_token, generate
from lorabench.tasks.models import base_dtype, resolve_model
from lorabench.tasks.padding_free import (
    IGNORE_INDEX,
    group_rows,
    model_inputs,
    pack_rows,
    packing_problem,
    pad_rows,
    sub_batches,
)
from lorabench.tasks.selection import GENERATION_SELECT_CAP, SELECT_CAP, carve
from lorabench.tasks.sources import DataSourceError, load_split

__all__ = [
    "ALPACA_TEMPLATE",
    "IGNORE_INDEX",
    "LLAMA_TARGETS",
    "PAPER_NLG_DEFAULTS",
    "CausalLMTask",
    "GenerationParams",
    "InstructionDataParams",
    "held_out_loss",
    "response_loss",
    "subsample",
]

# The Alpaca prompt, as MetaMath, PiSSA and LoRA-GA train on MetaMathQA and CodeFeedback.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


class CausalLMTask:
    """A decoder-only model fine-tuned on (instruction, response) pairs.

    Training examples are `template.format(instruction=...)` followed by the response and
    EOS, truncated to `max_length` tokens. Prompt and response are tokenised separately (the
    prompt with the tokenizer's special tokens, exactly as `generate` sees it at evaluation;
    the response without), so the label boundary is exact: labels are -100 on prompt tokens
    and padding, and the loss is the mean cross-entropy over response tokens (EOS included).
    The training set is `train_size` rows drawn without replacement by the job's seed.

    A subclass sets `info` (its `params_cls` a `GenerationParams`; an `InstructionDataParams`
    when the default `training_rows` reads `params.data`), and may change `template` (with an
    `{instruction}` field) and `stop` (where completions are cut).
    """

    info: ClassVar[TaskInfo]
    template: ClassVar[str] = ALPACA_TEMPLATE
    stop: ClassVar[tuple[str, ...]] = ("### Instruction",)
    head_modules: tuple[str, ...] = ()

    def __init__(self, settings: TaskSettings) -> None:
        from transformers import AutoTokenizer

        self.settings = settings
        self.params: Any = settings.params
        self.eval_batch_size: int | None = getattr(self.params, "eval_batch_size", None)
        self._model_path = resolve_model(settings.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self._model_path)
        ensure_pad_token(self.tokenizer)
        self._eval: list[dict[str, Any]] | None = None
        self._select: list[dict[str, Any]] | None = None
        self._carved: tuple[list[int], list[int]] | None = None
        self._evaluations = 0

    # --- what subclasses provide -------------------------------------------------------------

    def training_rows(self) -> Sequence[Mapping[str, Any]]:
        """All candidate training rows (a `datasets.Dataset` or a list of dicts)."""
        p = self.params
        rows = load_split(p.data, p.data_split, config=p.data_config)
        missing = [f for f in (p.query_field, p.response_field) if f not in rows.column_names]
        if missing:
            raise DataSourceError(
                f"{p.data}: no field {missing[0]!r} in split {p.data_split!r}; it has "
                f"{', '.join(rows.column_names)} (set query_field / response_field)"
            )
        return rows

    def training_pair(self, row: Mapping[str, Any]) -> tuple[str, str]:
        """(instruction, response) of one training row."""
        return str(row[self.params.query_field]), str(row[self.params.response_field])

    def eval_records(self) -> list[dict[str, Any]]:
        """Evaluation problems, each a dict with at least "prompt" (the full model input)."""
        raise NotImplementedError

    def score(self, records: Sequence[dict[str, Any]], completions: Sequence[str]) -> dict:
        """Metrics of the completions (one per record, same order)."""
        raise NotImplementedError

    def correct(self, records: Sequence[dict[str, Any]], completions: Sequence[str]) -> list | None:
        """Whether each completion is right by the primary metric (None: not defined)."""
        return None

    def select_records(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Evaluation records (as `eval_records`) of held-out training rows, for a task whose
        select split is scored by generation; rows without a usable answer may be left out."""
        raise NotImplementedError(f"task {self.info.name!r} cannot score training rows")

    # --- the Task protocol -------------------------------------------------------------------

    def format_prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction)

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM, logging

        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        try:
            return AutoModelForCausalLM.from_pretrained(
                self._model_path, dtype=base_dtype(self.settings.base_dtype, self._model_path)
            )
        finally:
            logging.set_verbosity(verbosity)

    def load(self, split: str) -> Sequence[dict[str, Any]]:
        split = split_name(split)
        if split == "test":
            return [{"index": i} for i in range(len(self._eval_set()))]
        if split == "select" and not self._by_loss:
            return [{"index": i} for i in range(len(self._select_set()))]
        rows = self.training_rows()
        pool, select = self._carve(len(rows))
        if split == "train":  # drawn by the job's seed from what select left
            draw = subsample(len(pool), self.settings.train_size, self.settings.seed)
            chosen = [pool[i] for i in draw]
        else:  # select, scored by its loss: training pairs
            chosen = select[: self.settings.eval_size]
        # One select is far faster than indexing a datasets.Dataset row by row.
        picked = rows.select(chosen) if hasattr(rows, "select") else [rows[i] for i in chosen]
        return self.encode_pairs([self.training_pair(row) for row in picked])

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Token ids and labels of (instruction, response) pairs, truncated to max_length."""
        if not pairs:
            return []
        tok = self.tokenizer
        prompts = tok([self.format_prompt(q) for q, _ in pairs])["input_ids"]
        responses = tok([r for _, r in pairs], add_special_tokens=False)["input_ids"]
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        limit = self.settings.max_length
        examples = []
        for prompt, response in zip(prompts, responses, strict=True):
            target = [*response, *eos]
            ids = [*prompt, *target][:limit]
            labels = ([IGNORE_INDEX] * len(prompt) + target)[:limit]
            examples.append({"input_ids": ids, "labels": labels})
        return examples

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        """One right-padded row per example (input_ids, attention_mask, labels)."""
        return pad_rows(examples, self.tokenizer.pad_token_id)

    def collate_train(self, examples: Sequence[dict[str, Any]]) -> Batch:
        """A training micro-batch: packed rows, length-grouped padded rows, or `collate`'s."""
        pad = self.tokenizer.pad_token_id
        if self._layout == "packed":
            return pack_rows(examples, pad)
        return group_rows(examples, pad) if self._layout == "grouped" else self.collate(examples)

    def collate_eval(self, examples: Sequence[dict[str, Any]]) -> Batch:
        if "labels" in examples[0]:  # select rows scored by their loss: training pairs
            if self._layout == "packed":
                return pack_rows(examples, self.tokenizer.pad_token_id)
            return self.collate(examples)
        # Prompts stay on the task; batches carry only which records to generate for.
        return {"index": torch.tensor([e["index"] for e in examples], dtype=torch.long)}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        total, count = _batch_loss_sum(model, batch)
        return total / count.clamp(min=1)

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], split: str = "test"
    ) -> Evaluation:
        split = split_name(split)
        if split == "select" and self._by_loss:
            return Evaluation({"loss": held_out_loss(model, batches)})
        every = self._records(split)
        records = [every[i] for batch in batches for i in batch["index"].tolist()]
        completions = generate(
            model,
            self.tokenizer,
            [r["prompt"] for r in records],
            max_new_tokens=self.params.max_new_tokens,
            stop=self.stop,
            batch_size=self.eval_batch_size or 8,
            progress=sys.stderr.isatty(),  # a bar for people at a terminal, not in logs/tests
        )
        scores = self.score(records, completions)
        correct = self.correct(records, completions)
        self._evaluations += 1
        if self.params.dump_generations:
            self._dump(records, completions, scores, split)
        return Evaluation(scores, None if correct is None else {"correct": correct})

    # --- helpers -----------------------------------------------------------------------------

    @property
    def _by_loss(self) -> bool:
        return self.info.select_metric == "loss"

    @cached_property
    def _layout(self) -> str:
        """How loss batches are laid out: "packed", "grouped" (the fallback) or "padded"."""
        if not self.params.padding_free:
            return "padded"
        problem = packing_problem(self._model_path)
        if problem is None:
            return "packed"
        warnings.warn(
            f"{self.settings.model}: packed rows would not keep examples apart ({problem}); "
            "training on length-grouped padded rows instead",
            stacklevel=2,
        )
        return "grouped"

    def _carve(self, n: int) -> tuple[list[int], list[int]]:
        """(training pool, select) positions among the `n` training rows."""
        if self._carved is None:
            if self.settings.select_split:
                cap = SELECT_CAP if self._by_loss else GENERATION_SELECT_CAP
                self._carved = carve(range(n), cap=cap)
            else:
                self._carved = (list(range(n)), [])
        return self._carved

    def _records(self, split: str) -> list[dict[str, Any]]:
        return self._select_set() if split == "select" else self._eval_set()

    def _eval_set(self) -> list[dict[str, Any]]:
        # Every job scores the same problems: the first eval_size records, whatever the seed.
        if self._eval is None:
            records = self.eval_records()
            size = self.settings.eval_size
            self._eval = records[:size] if size is not None else records
            if not self._eval:
                raise DataSourceError(f"task {self.info.name!r}: no evaluation problems")
        return self._eval

    def _select_set(self) -> list[dict[str, Any]]:
        # The same held-out rows for every job: the first eval_size of those carved.
        if self._select is None:
            rows = self.training_rows()
            _, select = self._carve(len(rows))
            picked = rows.select(select) if hasattr(rows, "select") else [rows[i] for i in select]
            records = self.select_records(picked) if select else []
            size = self.settings.eval_size
            self._select = records[:size] if size is not None else records
        return self._select

    def _dump(self, records: Sequence[dict], completions: Sequence[str], scores: dict,
              split: str) -> None:  # fmt: skip
        path = Path(self.params.dump_generations).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"evaluation": self._evaluations, "split": split}
        with path.open("a", encoding="utf-8") as out:
            for record, completion in zip(records, completions, strict=True):
                row = {**head, **_jsonable(record)}
                out.write(json.dumps({**row, "completion": completion}) + "\n")
            out.write(json.dumps({**head, "scores": scores}) + "\n")


def subsample(n: int, size: int | None, seed: int) -> list[int]:
    """`size` of range(n) drawn without replacement by `seed` (all of it when size is None
    or at least n), in increasing order; the trainer shuffles per epoch anyway."""
    if size is None or size >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), size))


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions (labels != -100).

    A batch whose responses were all truncated away has no labelled token: its loss is 0
    (with a graph, so backward still works) instead of NaN.
    """
    total, count = _response_loss_sum(logits, labels)
    return total / count.clamp(min=1)


def _response_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    shifted = logits[:, :-1].flatten(0, 1).float()
    targets = labels[:, 1:].flatten()
    total = F.cross_entropy(shifted, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total, (targets != IGNORE_INDEX).sum()


def _batch_loss_sum(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed response cross-entropy, labelled tokens) of a packed, grouped or padded batch."""
    sums = []
    for part in sub_batches(batch):
        sums.append(_response_loss_sum(model(**model_inputs(part)).logits, part["labels"]))
    total, count = sums[0]
    for more, tokens in sums[1:]:
        total, count = total + more, count + tokens
    return total, count


@torch.no_grad()
def held_out_loss(model: nn.Module, batches: Iterable[Batch]) -> float:
    """The response loss over every labelled token of `batches` (token-weighted, so it does
    not depend on how the rows are batched)."""
    total, count = 0.0, 0
    for batch in batches:
        part, tokens = _batch_loss_sum(model, batch)
        total, count = total + part.item(), count + int(tokens.item())
    return total / max(count, 1)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, str | int | float | bool | None)}
