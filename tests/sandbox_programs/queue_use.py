"""Sandbox corpus: queue use (an ordinary program that must pass in every mode)."""

import queue
import threading


def produce_consume(items):
    q = queue.Queue()
    out = []

    def consumer():
        while (item := q.get()) is not None:
            out.append(item * 2)

    thread = threading.Thread(target=consumer)
    thread.start()
    for item in items:
        q.put(item)
    q.put(None)
    thread.join()
    return out


def check(candidate):
    assert candidate([1, 2, 3]) == [2, 4, 6]


check(produce_consume)
pq = queue.PriorityQueue()
for x in (3, 1, 2):
    pq.put(x)
assert [pq.get() for _ in range(3)] == [1, 2, 3]
lifo = queue.LifoQueue()
lifo.put(1)
lifo.put(2)
assert lifo.get() == 2
print(produce_consume(range(4)))
