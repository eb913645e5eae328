"""Sandbox corpus: statistics use (an ordinary program that must pass in every mode)."""

import statistics


def summary(values):
    return statistics.mean(values), statistics.median(values), statistics.mode(values)


def check(candidate):
    assert candidate([1, 2, 2, 3, 7]) == (3, 2, 2)


check(summary)
assert round(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]), 4) == 2.1381
assert statistics.quantiles([1, 2, 3, 4, 5, 6, 7, 8], n=4) == [2.25, 4.5, 6.75]
print(statistics.pvariance([1, 2, 3, 4]), statistics.harmonic_mean([1, 2, 4]))
