"""Sandbox corpus: concurrent futures (an ordinary program that must pass in every mode)."""

from concurrent.futures import ThreadPoolExecutor, as_completed


def square_all(numbers):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda x: x * x, numbers))


def check(candidate):
    assert candidate(range(10)) == [x * x for x in range(10)]


check(square_all)
with ThreadPoolExecutor(max_workers=2) as pool:
    futures = [pool.submit(sum, range(n)) for n in (10, 100)]
    assert sorted(f.result() for f in as_completed(futures)) == [45, 4950]
print(square_all([1, 2, 3]))
