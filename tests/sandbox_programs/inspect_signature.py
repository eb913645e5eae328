"""Sandbox corpus: inspect signature (an ordinary program that must pass in every mode)."""

import inspect


def describe(function):
    return [
        (name, p.default is p.empty) for name, p in inspect.signature(function).parameters.items()
    ]


def sample(a, b=2, *args, c, **kwargs):
    """Doc."""
    return a


def check(candidate):
    assert candidate(sample) == [
        ("a", True),
        ("b", False),
        ("args", True),
        ("c", True),
        ("kwargs", True),
    ]


check(describe)
assert inspect.isfunction(sample) and inspect.getdoc(sample) == "Doc."
assert "return a" in inspect.getsource(sample)
assert inspect.currentframe().f_code.co_name == "<module>"
print(inspect.signature(sample))
