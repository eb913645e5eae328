"""Sandbox corpus: array use (an ordinary program that must pass in every mode)."""

from array import array


def running_total(values):
    out = array("l")
    total = 0
    for value in values:
        total += value
        out.append(total)
    return out


def check(candidate):
    assert candidate([1, 2, 3]).tolist() == [1, 3, 6]


check(running_total)
doubles = array("d", [1.0, 2.5])
doubles.extend([4.0])
assert doubles.itemsize == 8 and sum(doubles) == 7.5
assert array("b", b"\x01\x02").tobytes() == b"\x01\x02"
print(running_total(range(5)))
