"""Sandbox corpus: math use (an ordinary program that must pass in every mode)."""

import math


def is_prime(n):
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def check(candidate):
    assert candidate(2) and candidate(97)
    assert not candidate(1) and not candidate(91)


check(is_prime)
assert math.gcd(12, 18) == 6 and math.lcm(4, 6) == 12
assert math.isclose(math.sqrt(2) ** 2, 2.0)
assert math.comb(5, 2) == 10 and math.factorial(5) == 120
assert math.floor(-1.5) == -2 and math.ceil(1.2) == 2
print(round(math.pi, 6), math.inf > 10**100, math.isnan(math.nan))
