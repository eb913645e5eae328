"""Sandbox corpus: io use (an ordinary program that must pass in every mode)."""

import io


def lines_upper(text):
    buffer = io.StringIO()
    for line in io.StringIO(text):
        buffer.write(line.upper())
    return buffer.getvalue()


def check(candidate):
    assert candidate("a\nb\n") == "A\nB\n"


check(lines_upper)
raw = io.BytesIO()
raw.write(b"hello")
raw.seek(0)
assert raw.read(2) == b"he"
wrapped = io.TextIOWrapper(io.BytesIO("héllo".encode()), encoding="utf-8")
assert wrapped.read() == "héllo"
print(lines_upper("x\ny"))
