"""Sandbox corpus: doctest use (an ordinary program that must pass in every mode)."""

import doctest


def square(x):
    """Return x squared.

    >>> square(3)
    9
    >>> [square(i) for i in range(4)]
    [0, 1, 4, 9]
    """
    return x * x


failures, tests = doctest.testmod()
assert failures == 0 and tests == 2, (failures, tests)
results = doctest.run_docstring_examples(square, {"square": square})
print("doctests", tests)
