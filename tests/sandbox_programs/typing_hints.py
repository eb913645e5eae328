"""Sandbox corpus: typing hints (an ordinary program that must pass in every mode)."""
# ruff: noqa: UP006, UP035, UP045 - the old typing names, as HumanEval prompts use them

from typing import Dict, List, Optional, Tuple


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])


def first_and_counts(words: List[str]) -> Tuple[Optional[str], Dict[str, int]]:
    counts: Dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return (words[0] if words else None), counts


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0], 0.3)
    assert not candidate([1.0, 2.0, 3.0], 0.5)


check(has_close_elements)
assert first_and_counts([]) == (None, {})
assert first_and_counts(["a", "b", "a"]) == ("a", {"a": 2, "b": 1})
print(first_and_counts(["x", "y", "x"]))
