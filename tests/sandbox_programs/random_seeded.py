"""Sandbox corpus: random seeded (an ordinary program that must pass in every mode)."""

import random


def shuffled(items, seed):
    rng = random.Random(seed)
    copy = list(items)
    rng.shuffle(copy)
    return copy


def check(candidate):
    assert candidate(range(10), 1) == candidate(range(10), 1)
    assert sorted(candidate(range(10), 2)) == list(range(10))


check(shuffled)
random.seed(42)
print([random.randint(1, 100) for _ in range(5)], random.choice("abcdef"))
print(shuffled("abcdefg", 7), round(random.Random(3).random(), 12))
print(random.Random(5).sample(range(100), 4))
