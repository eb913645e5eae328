"""Sandbox corpus: itertools use (an ordinary program that must pass in every mode)."""

import itertools


def pairwise_sums(numbers):
    return [a + b for a, b in itertools.pairwise(numbers)]


def check(candidate):
    assert candidate([1, 2, 3, 4]) == [3, 5, 7]
    assert candidate([1]) == []


check(pairwise_sums)
assert list(itertools.accumulate([1, 2, 3])) == [1, 3, 6]
assert len(list(itertools.permutations("abc"))) == 6
assert list(itertools.combinations(range(4), 2))[:2] == [(0, 1), (0, 2)]
assert ["".join(g) for _, g in itertools.groupby("aabbbc")] == ["aa", "bbb", "c"]
assert list(itertools.islice(itertools.count(10, 5), 3)) == [10, 15, 20]
assert list(itertools.chain.from_iterable([[1], [2, 3]])) == [1, 2, 3]
print(list(itertools.product("ab", repeat=2)))
