"""Sandbox corpus: difflib pprint (an ordinary program that must pass in every mode)."""

import difflib
import pprint


def closest(word, options):
    matches = difflib.get_close_matches(word, options, n=1)
    return matches[0] if matches else None


def check(candidate):
    assert candidate("appel", ["ape", "apple", "peach"]) == "apple"
    assert candidate("zzz", ["a"]) is None


check(closest)
diff = list(difflib.unified_diff(["a\n", "b\n"], ["a\n", "c\n"], "old", "new", lineterm="\n"))
assert diff[-2:] == ["-b\n", "+c\n"]
assert round(difflib.SequenceMatcher(None, "abcd", "abed").ratio(), 2) == 0.75
pprint.pprint({"b": list(range(12)), "a": {"nested": ["x" * 30, "y" * 30]}}, width=60)
print(pprint.pformat([1, 2, 3]))
