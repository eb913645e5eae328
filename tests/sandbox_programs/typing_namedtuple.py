"""Sandbox corpus: typing namedtuple (an ordinary program that must pass in every mode)."""

from typing import NamedTuple


class Interval(NamedTuple):
    start: int
    end: int

    def length(self):
        return self.end - self.start


def merge(intervals):
    merged = []
    for current in sorted(intervals):
        if merged and current.start <= merged[-1].end:
            merged[-1] = merged[-1]._replace(end=max(merged[-1].end, current.end))
        else:
            merged.append(current)
    return merged


def check(candidate):
    assert candidate([Interval(1, 3), Interval(2, 6), Interval(8, 10)]) == [(1, 6), (8, 10)]


check(merge)
assert Interval(2, 5).length() == 3 and Interval._fields == ("start", "end")
print(merge([Interval(5, 7), Interval(1, 2)]))
