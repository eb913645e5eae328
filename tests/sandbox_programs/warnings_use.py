"""Sandbox corpus: warnings use (an ordinary program that must pass in every mode)."""

import warnings


def old_api(x):
    warnings.warn("old_api is deprecated", DeprecationWarning, stacklevel=2)
    return x * 2


def check(candidate):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert candidate(2) == 4
    assert [str(w.message) for w in caught] == ["old_api is deprecated"]


check(old_api)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    try:
        old_api(1)
    except DeprecationWarning as error:
        print("raised:", error)
warnings.warn("to stderr", UserWarning, stacklevel=1)
print("warnings ok")
