"""Sandbox corpus: calendar use (an ordinary program that must pass in every mode)."""

import calendar


def fridays_13(year):
    return [m for m in range(1, 13) if calendar.weekday(year, m, 13) == calendar.FRIDAY]


def check(candidate):
    assert candidate(2015) == [2, 3, 11]
    assert candidate(2024) == [9, 12]


check(fridays_13)
assert calendar.isleap(2024) and not calendar.isleap(1900)
assert calendar.monthrange(2024, 2) == (3, 29)
print(calendar.month(2024, 2))
