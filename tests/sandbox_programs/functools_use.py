"""Sandbox corpus: functools use (an ordinary program that must pass in every mode)."""

import functools


@functools.lru_cache(maxsize=256)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def product(numbers):
    return functools.reduce(lambda a, b: a * b, numbers, 1)


def check(candidate):
    assert candidate(10) == 55
    assert candidate(50) == 12586269025


check(fib)
assert product([1, 2, 3, 4]) == 24
assert fib.cache_info().hits > 0
by_length = functools.cmp_to_key(lambda a, b: len(a) - len(b))
assert sorted(["ccc", "a", "bb"], key=by_length) == ["a", "bb", "ccc"]
add3 = functools.partial(lambda a, b: a + b, 3)
assert add3(4) == 7
print(fib(30), product(range(1, 8)))
