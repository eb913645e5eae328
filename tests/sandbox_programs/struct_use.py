"""Sandbox corpus: struct use (an ordinary program that must pass in every mode)."""

import struct


def pack_point(x, y):
    return struct.pack("<if", x, y)


def check(candidate):
    assert struct.unpack("<if", candidate(3, 1.5)) == (3, 1.5)
    assert len(candidate(0, 0)) == 8


check(pack_point)
assert struct.calcsize(">HHI") == 8
header = struct.Struct(">4sI")
assert header.unpack(header.pack(b"LORA", 7)) == (b"LORA", 7)
print(pack_point(1, 2.0).hex())
