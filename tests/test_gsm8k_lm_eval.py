"""GSM8K's two readings: lm-evaluation-harness's (task_params extraction = "lm-eval") against
lorabench's numeric one (the default), and how a job reports them.

Every expected harness output in CASES was worked out by hand from the harness's regexes
(lm-eval 0.4.13, lm_eval/tasks/gsm8k/gsm8k.yaml v3.0; see lorabench/tasks/gsm8k_lm_eval.py):
  strict-match      first match of  #### (\\-?[0-9\\.\\,]+)
  flexible-extract  last match of   (-?[$0-9.,]{2,})|(-?[0-9]+)   (the group that matched)
  no match          "[invalid]"
  exact_match       delete ",", "\\$", "(?s).*#### ", "\\.$" (in that order) from both sides,
                    lower-case, compare strings; the reference is the whole gold solution.
The table was also run once through the harness's own RegexFilter and exact_match_hf_evaluate
(from the lm-eval 0.4.13 wheel), which agreed on every row; lm-eval is not a dependency, so
that check is not repeated here.
"""

from dataclasses import dataclass

import pytest

from lorabench.catalog.task import build_task_params, get_task_info
from lorabench.config import resolve_job
from lorabench.errors import InvalidTaskParams
from lorabench.tasks.gsm8k import Gsm8kScoring, extract_answer, normalize_number
from lorabench.tasks.gsm8k_lm_eval import (
    INVALID,
    lm_eval_accuracy,
    lm_eval_correct,
    lm_eval_extract,
    lm_eval_normalize,
)


@dataclass(frozen=True)
class Case:
    completion: str
    reference: str  # the gold solution as the dataset holds it
    strict: str  # what the harness's strict-match filter keeps
    flexible: str  # what its flexible-extract filter keeps
    strict_ok: bool  # the harness's exact_match per filter
    flexible_ok: bool
    ours_strict_ok: bool  # lorabench's numeric reading (extraction = "lorabench")
    ours_flexible_ok: bool


# fmt: off
T, F = True, False
CASES = [
    # The issue's three cases. "####18": no space after the marker, so strict finds nothing;
    # flexible reads "18".
    Case("####18", "#### 18", INVALID, "18", F, T, T, T),
    # "$" is outside strict's class [0-9.,]; flexible's class has it: "$1,200" -> "1200".
    Case("#### $1,200", "He earns $1,200.\n#### 1200", INVALID, "$1,200", F, T, T, T),
    # Strings, not numbers: "5.00" is not "5".
    Case("answer: 5.00", "#### 5", INVALID, "5.00", F, F, F, T),
    # Plain answers.
    Case("#### 18", "#### 18", "18", "18", T, T, T, T),
    Case("She makes 9 * 2 = $18 every day.\n#### 18", "#### 18", "18", "18", T, T, T, T),
    Case("#### 3.75", "#### 3.75", "3.75", "3.75", T, T, T, T),
    # Negative numbers: the sign is in both classes; "-$3" stops strict at "$".
    Case("The temperature fell to -5 degrees.\n#### -5", "#### -5", "-5", "-5", T, T, T, T),
    Case("#### -$3", "#### -3", INVALID, "-$3", F, T, T, T),
    Case("-$3.50 each", "#### -3.50", INVALID, "-$3.50", F, T, F, T),
    Case("#### -0", "#### 0", "-0", "-0", F, F, T, T),
    # Decimals written differently from the gold.
    Case("#### 18.00", "#### 18", "18.00", "18.00", F, F, T, T),
    Case("#### 2.50", "Cost is $2.50 each.\n#### 2.5", "2.50", "2.50", F, F, T, T),
    Case("half of it is .5", "#### 0.5", INVALID, ".5", F, F, F, T),
    # lorabench reads the number 7.5 and stops; the harness's class swallows "7.5.5".
    Case("#### 7.5.5", "#### 7.5", "7.5.5", "7.5.5", F, F, T, F),
    # Trailing periods: one final "." is deleted, not an ellipsis.
    Case("#### 42.", "#### 42", "42.", "42.", T, T, T, T),
    Case("#### 15.\nThe answer is 15.", "#### 15", "15.", "15.", T, T, T, T),
    Case("So the total is 10...", "#### 10", INVALID, "10...", F, F, F, T),
    # Commas: thousands separators on either side are deleted, so is a trailing one.
    Case("#### 1,234,567", "#### 1234567", "1,234,567", "1,234,567", T, T, T, T),
    Case("#### 1234", "The total is 1,234 dollars.\n#### 1,234", "1234", "1234", T, T, T, T),
    Case("#### 1,200, which is the total", "#### 1200", "1,200,", "1,200,", T, T, T, T),
    # Several markers: strict takes the first number, flexible the last.
    Case("#### 7 and #### 8", "#### 8", "7", "8", F, T, F, T),
    Case("#### unknown, maybe 7\n#### 7", "#### 7", "7", "7", T, T, T, T),
    # Text after the number.
    Case("#### 12\nThen 99 more", "#### 12", "12", "99", T, F, T, F),
    Case("#### 5 apples", "#### 5", "5", "5", T, T, T, T),
    # Two spaces, or "$ ", after the marker: strict fails; flexible finds the number.
    Case("####  18", "#### 18", INVALID, "18", F, T, T, T),
    Case("#### $ 25", "#### 25", INVALID, "25", F, T, T, T),
    # Answers only in the flexible form.
    Case("The answer is 42.", "#### 42", INVALID, "42.", F, T, F, T),
    Case("The answer is: 14", "#### 14", INVALID, "14", F, T, F, T),
    Case("Total: 1,000,000", "#### 1000000", INVALID, "1,000,000", F, T, F, T),
    Case("50% of 80 is 40%", "#### 40", INVALID, "40", F, T, F, T),
    # "-3" of "10-3" is a match of its own (alternative 2); the last is "7".
    Case("10-3=7", "#### 7", INVALID, "7", F, T, F, T),
    # The harness reads "4-10" as -10 (lorabench as 10): wrong either way against 7.
    Case("so 10 - 3 = 7, then 4-10", "#### 7", INVALID, "-10", F, F, F, F),
    # "$." is two characters of flexible's class; normalised it is "", not a number.
    Case("It costs $.", "#### 5", INVALID, "$.", F, F, F, F),
    # Nothing to read.
    Case("", "#### 0", INVALID, INVALID, F, F, F, F),
    Case("I don't know.", "#### 3", INVALID, INVALID, F, F, F, F),
]
# fmt: on


def test_the_table_is_large_enough():
    assert len(CASES) >= 23 and len({c.completion for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[repr(c.completion)[:40] for c in CASES])
def test_harness_filters_and_exact_match(case: Case):
    assert lm_eval_extract(case.completion, "strict") == case.strict
    assert lm_eval_extract(case.completion, "flexible") == case.flexible
    assert lm_eval_correct(case.completion, case.reference, "strict") is case.strict_ok
    assert lm_eval_correct(case.completion, case.reference, "flexible") is case.flexible_ok


@pytest.mark.parametrize("case", CASES, ids=[repr(c.completion)[:40] for c in CASES])
def test_lorabench_reading_of_the_same_cases(case: Case):
    gold = extract_answer(case.reference, "strict")
    assert gold is not None
    assert (extract_answer(case.completion, "strict") == gold) is case.ours_strict_ok
    assert (extract_answer(case.completion, "flexible") == gold) is case.ours_flexible_ok


def test_the_issue_cases_read_as_the_issue_says():
    assert extract_answer("####18", "strict") == "18"
    assert lm_eval_extract("####18", "strict") == "[invalid]"
    assert extract_answer("#### $1,200", "strict") == "1200"
    assert lm_eval_extract("#### $1,200", "strict") == "[invalid]"
    assert extract_answer("answer: 5.00", "flexible") == normalize_number("5") == "5"
    assert lm_eval_normalize(lm_eval_extract("answer: 5.00", "flexible")) == "5.00"


@pytest.mark.parametrize(
    ("reference", "normalised"),
    [
        # A GSM8K solution: calculator annotations and all go with everything up to "#### ".
        (
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
            "<<48+24=72>>72 clips altogether in April and May.\n#### 72",
            "72",
        ),
        ("one costs $1,018.00\n#### 1,018", "1018"),
        ("#### 3\n#### 4", "4"),  # greedy: up to the LAST "#### "
        ("####5", "####5"),  # no space: the marker stays
        ("No Marker 4.", "no marker 4"),  # lower-cased; the final period goes
        ("#### 5.\n", "5\n"),  # `$` matches before a final newline; the newline stays
        ("#### 5..", "5."),  # one period only
        ("[invalid]", "[invalid]"),
    ],
)
def test_normalisation_of_references(reference: str, normalised: str):
    assert lm_eval_normalize(reference) == normalised


def test_invalid_never_matches_a_gsm8k_answer_and_case_is_ignored():
    assert not lm_eval_correct("no digits", "#### 0", "strict")
    # ignore_case: the comparison is lower-cased on both sides.
    assert lm_eval_correct("#### 5", "Five\n#### 5", "strict")
    assert lm_eval_normalize("ABC") == "abc"


def test_lm_eval_accuracy_is_the_mean_of_exact_matches():
    completions = [c.completion for c in CASES]
    references = [c.reference for c in CASES]
    strict_hits = sum(c.strict_ok for c in CASES)
    flexible_hits = sum(c.flexible_ok for c in CASES)
    assert (strict_hits, flexible_hits) == (12, 23)
    assert lm_eval_accuracy(completions, references, "strict") == 12 / len(CASES)
    assert lm_eval_accuracy(completions, references, "flexible") == 23 / len(CASES)
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        lm_eval_accuracy(["a", "b"], ["#### 1"], "strict")
    with pytest.raises(ValueError, match="empty"):
        lm_eval_accuracy([], [], "flexible")
    with pytest.raises(ValueError, match="unknown lm-eval filter 'last'"):
        lm_eval_extract("1", "last")  # type: ignore[arg-type]


# --- a job's metrics under each `extraction` ------------------------------------------------


class Scorer(Gsm8kScoring):
    """The GSM8K tasks' scoring without a model: only `params` is read."""

    def __init__(self, task: str, extraction: str | None) -> None:
        values = {} if extraction is None else {"extraction": extraction}
        self.params = build_task_params(task, values)


# The issue's three cases, each against its own gold: lorabench 2/3 strict, 3/3 flexible;
# the harness 0/3 strict, 2/3 flexible.
RECORDS = [{"gold": extract_answer(c.reference, "strict"), "reference": c.reference}
           for c in CASES[:3]]  # fmt: skip
COMPLETIONS = [c.completion for c in CASES[:3]]
OURS = {"accuracy_strict": 2 / 3, "accuracy_flexible": 1.0}
HARNESS = {"accuracy_lm_eval_strict": 0.0, "accuracy_lm_eval_flexible": 2 / 3}


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k-mini"])
def test_default_reading_is_lorabench_and_reports_as_before(task):
    scorer = Scorer(task, None)
    assert scorer.params.extraction == "lorabench"
    assert scorer.score(RECORDS, COMPLETIONS) == OURS
    assert scorer.correct(RECORDS, COMPLETIONS) == [True, True, False]
    assert Scorer(task, "lorabench").score(RECORDS, COMPLETIONS) == OURS


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k-mini"])
def test_lm_eval_reading_is_the_jobs_metric_and_is_recorded_by_name_too(task):
    scorer = Scorer(task, "lm-eval")
    assert scorer.score(RECORDS, COMPLETIONS) == {
        "accuracy_strict": 0.0,
        "accuracy_flexible": 2 / 3,
        **HARNESS,
    }
    # Per-problem outcomes follow the primary metric, here the harness's strict-match.
    assert scorer.correct(RECORDS, COMPLETIONS) == [False, False, False]


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k-mini"])
def test_both_keeps_lorabench_primary_and_adds_the_harness(task):
    scorer = Scorer(task, "both")
    assert scorer.score(RECORDS, COMPLETIONS) == {**OURS, **HARNESS}
    assert scorer.correct(RECORDS, COMPLETIONS) == [True, True, False]


def test_extraction_is_validated_at_plan_time():
    with pytest.raises(InvalidTaskParams, match="extraction='lm_eval'.*'lorabench', 'lm-eval' or"):
        build_task_params("gsm8k", {"extraction": "lm_eval"})
    # The primary metric never changes with the param; the harness's metrics are declared,
    # so `report --metric accuracy_lm_eval_strict` knows how to rank them.
    for task in ("gsm8k", "gsm8k-mini"):
        info = get_task_info(task)
        assert info.primary_metric == "accuracy_strict"
        assert info.metrics == ("accuracy_strict", "accuracy_flexible")
        for name in ("accuracy_lm_eval_strict", "accuracy_lm_eval_flexible"):
            spec = info.metric_spec(name)
            assert (spec.name, spec.higher_is_better, spec.percent) == (name, True, True)


def test_jobs_without_the_param_keep_their_hash():
    # Hashes computed by lorabench before `extraction` existed (task_params is hashed as given).
    before = {
        "gsm8k": "85965af3431c3bb7b3a08722fea11dfa7e6d4b277892af5b115080117c2d4050",
        "gsm8k-mini": "4b0e1aad14aa01b2cc0c060f994db9c2a8684d194548587023652eb592a62186",
    }
    for task, digest in before.items():
        job = resolve_job({"task": task, "variant": "lora", "lr": 1e-4})
        assert job.config_hash == digest
        both = resolve_job({"task": task, "variant": "lora", "lr": 1e-4,
                            "task_params": {"extraction": "both"}})  # fmt: skip
        assert both.config_hash != digest
        assert '"task_params":{"extraction":"both"}' in both.canonical_json()
