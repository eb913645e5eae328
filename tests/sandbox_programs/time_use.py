"""Sandbox corpus: time use (an ordinary program that must pass in every mode)."""

import time


def elapsed_is_monotonic():
    start = time.monotonic()
    time.sleep(0.01)
    return time.monotonic() - start >= 0.009


def check(candidate):
    assert candidate()


check(elapsed_is_monotonic)
assert time.time() > 1_600_000_000
assert time.perf_counter() > 0 and time.process_time() >= 0
fixed = time.gmtime(0)
assert fixed.tm_year == 1970
print(time.strftime("%Y-%m-%d %H:%M:%S", fixed), time.mktime(time.localtime()) > 0)
