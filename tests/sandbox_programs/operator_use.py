"""Sandbox corpus: operator use (an ordinary program that must pass in every mode)."""

import operator


def sort_records(records):
    return sorted(records, key=operator.itemgetter(1, 0))


def check(candidate):
    assert candidate([("b", 2), ("a", 2), ("c", 1)]) == [("c", 1), ("a", 2), ("b", 2)]


check(sort_records)
assert operator.add(2, 3) == 5 and operator.mul(2, 3) == 6
assert operator.attrgetter("real")(3 + 4j) == 3
assert operator.methodcaller("upper")("x") == "X"
print(list(map(operator.neg, [1, -2])))
