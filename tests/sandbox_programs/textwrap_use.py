"""Sandbox corpus: textwrap use (an ordinary program that must pass in every mode)."""

import textwrap


def wrap(text, width):
    return textwrap.wrap(text, width)


def check(candidate):
    assert candidate("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


check(wrap)
assert textwrap.dedent("    a\n    b\n") == "a\nb\n"
assert textwrap.shorten("Hello  world, how are you", width=15) == "Hello [...]"
print(textwrap.indent("x\ny", "> "))
print(textwrap.fill("lorem ipsum dolor sit amet consectetur", 12))
