"""Sandbox corpus: generators and classes (an ordinary program that must pass in every mode)."""


def primes():
    found = []
    candidate = 2
    while True:
        if all(candidate % p for p in found):
            found.append(candidate)
            yield candidate
        candidate += 1


class Stack:
    def __init__(self):
        self._items = []

    def push(self, item):
        self._items.append(item)
        return self

    def pop(self):
        return self._items.pop()

    def __len__(self):
        return len(self._items)


def check(candidate):
    gen = candidate()
    assert [next(gen) for _ in range(5)] == [2, 3, 5, 7, 11]


check(primes)
stack = Stack().push(1).push(2)
assert stack.pop() == 2 and len(stack) == 1
print({x: x**2 for x in range(4)}, sorted({3, 1, 2}), f"{3.14159:.2f}", divmod(17, 5))
