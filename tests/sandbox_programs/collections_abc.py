"""Sandbox corpus: collections abc (an ordinary program that must pass in every mode)."""

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence, Sequence


class Squares(Mapping):
    def __init__(self, n):
        self.n = n

    def __getitem__(self, key):
        if not 0 <= key < self.n:
            raise KeyError(key)
        return key * key

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def flatten(items):
    for item in items:
        if isinstance(item, Iterable) and not isinstance(item, str):
            yield from flatten(item)
        else:
            yield item


def check(candidate):
    assert list(candidate([1, [2, [3, "ab"]], (4,)])) == [1, 2, 3, "ab", 4]


check(flatten)
squares = Squares(4)
assert dict(squares) == {0: 0, 1: 1, 2: 4, 3: 9} and 3 in squares and squares.get(9) is None
assert isinstance([], MutableSequence) and isinstance((), Sequence)
assert isinstance(iter([]), Iterator) and isinstance(len, Callable)
print(sorted(squares.items()))
