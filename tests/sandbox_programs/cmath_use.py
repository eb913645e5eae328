"""Sandbox corpus: cmath use (an ordinary program that must pass in every mode)."""

import cmath


def roots(a, b, c):
    d = cmath.sqrt(b * b - 4 * a * c)
    return (-b + d) / (2 * a), (-b - d) / (2 * a)


def check(candidate):
    r1, r2 = candidate(1, 0, 1)
    assert cmath.isclose(r1, 1j) and cmath.isclose(r2, -1j)


check(roots)
assert cmath.isclose(cmath.exp(1j * cmath.pi), -1)
print(abs(3 + 4j), cmath.phase(-1))
