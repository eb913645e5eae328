"""Sandbox corpus: fractions use (an ordinary program that must pass in every mode)."""

from fractions import Fraction


def harmonic(n):
    return sum(Fraction(1, k) for k in range(1, n + 1))


def check(candidate):
    assert candidate(1) == 1
    assert candidate(3) == Fraction(11, 6)


check(harmonic)
assert Fraction("0.75") == Fraction(3, 4)
assert Fraction(1, 3).limit_denominator(10) == Fraction(1, 3)
print(harmonic(6), float(Fraction(1, 8)))
