"""lm-evaluation-harness's GSM8K scoring, re-stated: its two answer filters and its exact match.

Source: EleutherAI/lm-evaluation-harness, release 0.4.13 (checked against the wheel's files):
`lm_eval/tasks/gsm8k/gsm8k.yaml` (task `gsm8k`, metadata version 3.0; `gsm8k-cot.yaml` uses
the same flexible-extract filter and the same metric), `lm_eval/filters/extraction.py`
(`RegexFilter`), `lm_eval/filters/selection.py` (`take_first`) and `lm_eval/api/metrics.py`
(`exact_match_hf_evaluate`, ported from Hugging Face evaluate's `exact_match`). The behaviour is
re-stated here from those files, not copied:

- "strict-match": regex `#### (\\-?[0-9\\.\\,]+)` (one space after the marker, required), the
  FIRST match's group; no match: "[invalid]".
- "flexible-extract": regex `(-?[$0-9.,]{2,})|(-?[0-9]+)` with `group_select: -1`: the LAST
  match, of which the non-empty group; no match: "[invalid]".
- Either filter's string is stripped, and then `take_first` keeps the first of the repeated
  generations (one generation per problem here, so it changes nothing).
- exact_match with `ignore_case: true`, `ignore_punctuation: false` and
  `regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]`: each pattern, in that order,
  is deleted (`re.sub(pattern, "", s)`) from the prediction AND from the reference, both
  are lower-cased, and the two strings must be equal. The reference is the dataset's whole
  answer text (`doc_to_target: "{{answer}}"`): its normalisation deletes every comma and `$`,
  everything up to and including the LAST "#### ", and a final period.

So the comparison is of strings, not numbers: "5.00" does not equal "5", and "[invalid]"
equals no gold answer. What is not reproduced: the harness's prompt (5-shot
"Question: ...\\nAnswer:") and its stop sequences; a lorabench job keeps its own prompt
template and generation, and only the reading of each completion is the harness's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "INVALID",
    "LmEvalFilter",
    "lm_eval_accuracy",
    "lm_eval_correct",
    "lm_eval_extract",
    "lm_eval_normalize",
]

LmEvalFilter = Literal["strict", "flexible"]

INVALID = "[invalid]"  # RegexFilter's fallback
_FILTERS: dict[str, tuple[re.Pattern[str], int]] = {
    # (pattern, which match: group_select)
    "strict": (re.compile(r"#### (\-?[0-9\.\,]+)"), 0),
    "flexible": (re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)"), -1),
}
# Deleted in this order from prediction and reference alike.
_IGNORED = tuple(re.compile(p) for p in (",", r"\$", r"(?s).*#### ", r"\.$"))


def lm_eval_extract(text: str, mode: LmEvalFilter) -> str:
    """What the harness's "strict-match" or "flexible-extract" filter keeps of a completion:
    the matched text as written (e.g. "$1,200" or "5.00"), or "[invalid]"."""
    if mode not in _FILTERS:
        raise ValueError(f"unknown lm-eval filter {mode!r}; expected 'strict' or 'flexible'")
    pattern, group_select = _FILTERS[mode]
    matches = pattern.findall(text)
    if not matches:
        return INVALID
    match = matches[group_select]
    if isinstance(match, tuple):  # several groups: the first that matched
        match = next((group for group in match if group), INVALID)
    return match.strip()


def lm_eval_normalize(text: str) -> str:
    """A prediction or reference as exact_match compares it (see the module docstring)."""
    for pattern in _IGNORED:
        text = pattern.sub("", text)
    return text.lower()


def lm_eval_correct(completion: str, reference: str, mode: LmEvalFilter) -> bool:
    """Whether the harness scores `completion` right against the full gold answer text."""
    return lm_eval_normalize(lm_eval_extract(completion, mode)) == lm_eval_normalize(reference)


def lm_eval_accuracy(
    completions: Sequence[str], references: Sequence[str], mode: LmEvalFilter
) -> float:
    """The harness's exact_match (mean over problems) under one filter."""
    if len(completions) != len(references):
        raise ValueError(f"{len(completions)} completions but {len(references)} references")
    if not references:
        raise ValueError("cannot score an empty evaluation set")
    pairs = zip(completions, references, strict=True)
    return sum(lm_eval_correct(c, r, mode) for c, r in pairs) / len(references)
