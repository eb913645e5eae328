"""Sandbox corpus: bisect use (an ordinary program that must pass in every mode)."""

import bisect


def grade(score, breakpoints=(60, 70, 80, 90), grades="FDCBA"):
    return grades[bisect.bisect(breakpoints, score)]


def check(candidate):
    assert [candidate(s) for s in (33, 99, 77, 70, 89, 90, 100)] == list("FACCBAA")


check(grade)
items = [1, 3, 5]
bisect.insort(items, 4)
assert items == [1, 3, 4, 5]
assert bisect.bisect_left(items, 3) == 1
print(items)
