"""Sandbox corpus: pickle use (an ordinary program that must pass in every mode)."""

import pickle
from collections import OrderedDict


class Record:
    def __init__(self, name, tags):
        self.name, self.tags = name, tags

    def __eq__(self, other):
        return vars(self) == vars(other)


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def check(candidate):
    assert candidate(Record("r", {1, 2})) == Record("r", {1, 2})
    assert candidate(OrderedDict(a=1)) == OrderedDict(a=1)


check(roundtrip)
with open("state.pkl", "wb") as f:
    pickle.dump([1, "two", 3.0], f)
with open("state.pkl", "rb") as f:
    assert pickle.load(f) == [1, "two", 3.0]
print(roundtrip({"k": (1, 2)}))
