"""Sandbox corpus: re use (an ordinary program that must pass in every mode)."""

import re


def extract_emails(text):
    return re.findall(r"[\w.]+@[\w.]+\.\w+", text)


def check(candidate):
    assert candidate("mail a.b@x.org or c@y.com now") == ["a.b@x.org", "c@y.com"]
    assert candidate("none") == []


check(extract_emails)
pattern = re.compile(r"(?P<key>\w+)=(?P<value>\d+)")
assert {m["key"]: int(m["value"]) for m in pattern.finditer("a=1, b=22")} == {"a": 1, "b": 22}
assert re.sub(r"\s+", " ", "a   b\t c") == "a b c"
assert re.split(r"[,;]", "x,y;z") == ["x", "y", "z"]
print(re.fullmatch(r"\d{3}-\d{4}", "555-1234") is not None)
