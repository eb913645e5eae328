"""Sandbox corpus: exceptions and recursion (an ordinary program that must pass in every mode)."""

import sys


class ParseError(ValueError):
    pass


def parse_int(text):
    try:
        return int(text)
    except ValueError as error:
        raise ParseError(f"bad: {text!r}") from error


def depth(tree):
    return 1 + max((depth(c) for c in tree), default=0)


def check(candidate):
    assert candidate("42") == 42
    try:
        candidate("x")
    except ParseError as error:
        assert isinstance(error.__cause__, ValueError)
    else:
        raise AssertionError("no error")


check(parse_int)
nested = []
for _ in range(200):
    nested = [nested]
assert depth(nested) == 201
assert sys.getrecursionlimit() >= 1000
try:
    raise ExceptionGroup("many", [KeyError("a"), ValueError("b")])
except* KeyError as group:
    print("caught", len(group.exceptions))
except* ValueError:
    print("value too")
