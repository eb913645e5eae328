"""Sandbox corpus: heapq use (an ordinary program that must pass in every mode)."""

import heapq


def k_smallest(numbers, k):
    return heapq.nsmallest(k, numbers)


def merge_sorted(*lists):
    return list(heapq.merge(*lists))


def check(candidate):
    assert candidate([5, 1, 4, 2, 3], 2) == [1, 2]
    assert candidate([], 3) == []


check(k_smallest)
heap = []
for value in [5, 3, 8, 1]:
    heapq.heappush(heap, value)
assert [heapq.heappop(heap) for _ in range(4)] == [1, 3, 5, 8]
assert merge_sorted([1, 4], [2, 3]) == [1, 2, 3, 4]
print(heapq.nlargest(2, [3, 9, 4]))
