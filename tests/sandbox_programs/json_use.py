"""Sandbox corpus: json use (an ordinary program that must pass in every mode)."""

import json


def roundtrip(obj):
    return json.loads(json.dumps(obj))


def check(candidate):
    assert candidate({"a": [1, 2, {"b": None}]}) == {"a": [1, 2, {"b": None}]}
    assert candidate([1.5, True, "x"]) == [1.5, True, "x"]


check(roundtrip)
text = json.dumps({"z": 1, "a": [1, 2]}, sort_keys=True, indent=2)
assert json.loads(text)["a"] == [1, 2]
try:
    json.loads("{bad json}")
except json.JSONDecodeError as error:
    print("error at", error.pos)
print(text)
