"""Sandbox corpus: decimal use (an ordinary program that must pass in every mode)."""

from decimal import ROUND_HALF_UP, Decimal, getcontext


def money(amount):
    return Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def check(candidate):
    assert candidate("2.675") == Decimal("2.68")
    assert candidate("1") == Decimal("1.00")


check(money)
getcontext().prec = 30
assert Decimal(1) / Decimal(7) == Decimal("0.142857142857142857142857142857")
assert Decimal("0.1") + Decimal("0.2") == Decimal("0.3")
print(money("10.005"), Decimal(2).sqrt())
