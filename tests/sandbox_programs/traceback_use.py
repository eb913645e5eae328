"""Sandbox corpus: traceback use (an ordinary program that must pass in every mode)."""

import sys
import traceback


def safe_divide(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        return traceback.format_exc().strip().splitlines()[-1]


def check(candidate):
    assert candidate(6, 3) == 2
    assert candidate(1, 0) == "ZeroDivisionError: division by zero"


check(safe_divide)
try:
    {}["k"]
except KeyError:
    kind, value, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    assert frames[-1].name == "<module>" and frames[-1].filename.endswith(".py")
    print(traceback.format_exception_only(kind, value))
