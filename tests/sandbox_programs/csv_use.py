"""Sandbox corpus: csv use (an ordinary program that must pass in every mode)."""

import csv
import io


def to_csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


def check(candidate):
    assert candidate([["a", "b"], [1, "x,y"]]) == 'a,b\n1,"x,y"\n'


check(to_csv)
reader = csv.DictReader(io.StringIO("name,age\nann,3\nbob,5\n"))
rows = list(reader)
assert [r["name"] for r in rows] == ["ann", "bob"]
with open("table.csv", "w", newline="") as f:
    csv.writer(f).writerows([["k", "v"], ["1", "2"]])
with open("table.csv", newline="") as f:
    assert list(csv.reader(f)) == [["k", "v"], ["1", "2"]]
print(to_csv([["q", 'say "hi"']]), end="")
