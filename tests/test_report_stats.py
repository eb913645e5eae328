"""report/stats.py: t intervals against scipy, the recomputed metrics against scikit-learn and
scipy, and the paired bootstrap on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import f1_score, matthews_corrcoef

from lorabench.report.stats import (
    N_RESAMPLES,
    bootstrap,
    percentile_interval,
    prepare,
    t_interval,
    tie_p_value,
)


def test_t_interval_is_scipys_student_t():
    values = [0.81, 0.85, 0.90, 0.84]
    expected = scipy.stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert t_interval(values) == pytest.approx(expected)
    # Two seeds: t(0.975, 1) = 12.706; the half width is t * s / sqrt(2).
    low, high = t_interval([82.0, 84.0])
    assert (low, high) == pytest.approx((83 - 12.7062047, 83 + 12.7062047))
    assert all(math.isnan(x) for x in t_interval([0.5]))
    assert all(math.isnan(x) for x in t_interval([]))
    assert t_interval([0.5, 0.5]) == (0.5, 0.5)


def _labels(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, n)
    prediction = np.where(rng.random(n) < 0.6, target, rng.integers(0, k, n))
    return prediction, target


def _once(n: int) -> np.ndarray:
    return np.ones((1, n))  # every example drawn once: the metric on the data itself


def _weights(index: np.ndarray, n: int) -> np.ndarray:
    """How often each example was drawn, per resample (row of ``index``)."""
    return np.stack([np.bincount(row, minlength=n) for row in index]).astype(float)


@pytest.mark.parametrize("k", [2, 3])
def test_classification_metrics_match_scikit_learn(k):
    pred, true = _labels(300, k, seed=k)
    outcome = {"prediction": pred, "target": true}
    arrays, mcc = prepare("matthews_correlation", outcome, primary=True)
    assert mcc(arrays, _once(300))[0] == pytest.approx(matthews_corrcoef(true, pred))
    arrays, macro = prepare("macro_f1", outcome, primary=True)
    assert macro(arrays, _once(300))[0] == pytest.approx(
        f1_score(true, pred, average="macro", zero_division=0)
    )
    arrays, accuracy = prepare("accuracy", outcome, primary=False)
    assert accuracy(arrays, _once(300))[0] == pytest.approx(np.mean(pred == true))
    if k == 2:
        arrays, f1 = prepare("f1", outcome, primary=True)
        assert f1(arrays, _once(300))[0] == pytest.approx(
            f1_score(true, pred, pos_label=1, zero_division=0)
        )
    # On resamples (counts of each example drawn) as scikit-learn scores the resampled data,
    # even where a class is missing (macro-F1 then averages over the classes present).
    rng = np.random.default_rng(0)
    index = rng.integers(0, 300, (5, 300))
    index[0] = np.flatnonzero(true != 0)[rng.integers(0, (true != 0).sum(), 300)]
    w = _weights(index, 300)
    arrays, mcc = prepare("matthews_correlation", outcome, primary=True)
    assert mcc(arrays, w) == pytest.approx([matthews_corrcoef(true[i], pred[i]) for i in index])
    arrays, macro = prepare("macro_f1", outcome, primary=True)
    assert macro(arrays, w) == pytest.approx(
        [f1_score(true[i], pred[i], average="macro", zero_division=0) for i in index]
    )


def test_correlations_and_mse_match_scipy():
    rng = np.random.default_rng(3)
    true = rng.normal(size=200)
    pred = true + rng.normal(scale=0.5, size=200)
    pred[:20] = np.round(pred[:20])  # some ties for Spearman's average ranks
    outcome = {"prediction": pred, "target": true}
    index = rng.integers(0, 200, (4, 200))
    w = _weights(index, 200)
    arrays, pearson = prepare("pearson", outcome, primary=True)
    assert pearson(arrays, _once(200))[0] == pytest.approx(
        scipy.stats.pearsonr(pred, true).statistic
    )
    assert pearson(arrays, w) == pytest.approx(
        [scipy.stats.pearsonr(pred[i], true[i]).statistic for i in index]
    )
    arrays, spearman = prepare("spearmanr", outcome, primary=True)
    assert spearman(arrays, _once(200))[0] == pytest.approx(
        scipy.stats.spearmanr(pred, true).statistic
    )
    assert spearman(arrays, w) == pytest.approx(
        [scipy.stats.spearmanr(pred[i], true[i]).statistic for i in index]
    )
    arrays, score = prepare("score", outcome, primary=True)
    assert score(arrays, _once(200))[0] == pytest.approx(-np.mean((pred - true) ** 2))
    # Constant predictions: 0, as the tasks report it.
    arrays, pearson = prepare("pearson", {"prediction": np.full(10, 0.3), "target": true[:10]},
                              primary=True)  # fmt: skip
    assert pearson(arrays, _once(10))[0] == 0.0


def _scipy_interval(samples, statistic) -> tuple[float, float]:  # noqa: ANN001
    result = scipy.stats.bootstrap(samples, statistic, paired=True, vectorized=True,
                                   method="percentile", rng=np.random.default_rng(1))  # fmt: skip
    return result.confidence_interval.low, result.confidence_interval.high


def test_the_bootstrap_distribution_is_scipys_paired_bootstrap():
    """Counting distinct outcome rows draws from the same distribution as drawing example
    indices: the 95% intervals agree with scipy.stats.bootstrap's to resampling noise."""
    rng = np.random.default_rng(5)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.7
    ours = percentile_interval(bootstrap([[_correct(a)], [_correct(b)]],
                                         lambda m: m[0] - m[1]))  # fmt: skip
    theirs = _scipy_interval((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis))
    assert ours == pytest.approx(theirs, abs=0.006)
    # Continuous outcomes (many distinct rows) take the index-drawing path.
    true = rng.normal(size=150)
    p1, p2 = true + rng.normal(scale=0.4, size=150), true + rng.normal(scale=0.6, size=150)
    cells = [[prepare("pearson", {"prediction": p, "target": true}, primary=True)]
             for p in (p1, p2)]  # fmt: skip
    ours = percentile_interval(bootstrap(cells, lambda m: m[0] - m[1]))

    def pearson_gap(x, y, t, axis):  # noqa: ANN001, ANN202
        r = [scipy.stats.pearsonr(v, t, axis=axis).statistic for v in (x, y)]
        return r[0] - r[1]

    theirs = _scipy_interval((p1, p2, true), pearson_gap)
    assert ours == pytest.approx(theirs, abs=0.01)


def test_right_or_wrong_outcomes_serve_only_the_primary_metric_as_accuracy():
    correct = {"correct": np.array([True, False, True, True])}
    arrays, accuracy = prepare("accuracy_strict", correct, primary=True)
    assert accuracy(arrays, _once(4))[0] == 0.75
    assert prepare("pass@1", correct, primary=True) is not None
    assert prepare("accuracy_flexible", correct, primary=False) is None  # not what it records
    assert prepare("matthews_correlation", correct, primary=True) is None
    assert prepare("loss", {"prediction": np.ones(3), "target": np.ones(3)}, primary=True) is None


def _correct(values) -> tuple:  # noqa: ANN001
    return prepare("accuracy", {"correct": np.asarray(values, dtype=bool)}, primary=True)


def test_identical_predictions_are_tied_with_p_one():
    same = np.random.default_rng(1).random(200) < 0.7
    p = tie_p_value([_correct(same)], [_correct(same)], higher_is_better=True)
    assert p == 1.0


def test_right_wherever_the_other_is_wrong_is_significant():
    other = np.arange(200) % 2 == 0  # right on half the examples
    best = np.ones(200, dtype=bool)  # right on every example the other misses, and the rest
    p = tie_p_value([_correct(best)], [_correct(other)], higher_is_better=True)
    assert p < 0.001
    assert p == pytest.approx(1 / (N_RESAMPLES + 1))  # no resample favours the other
    # The direction follows the metric: where lower is better the same pair is not significant.
    assert tie_p_value([_correct(best)], [_correct(other)], higher_is_better=False) == 1.0


def test_small_difference_is_a_tie_and_the_bootstrap_is_seeded():
    rng = np.random.default_rng(7)
    base = rng.random(300) < 0.8
    flipped = base.copy()
    flipped[np.flatnonzero(base)[:4]] = False  # 4 examples worse, 2 better: within noise
    flipped[np.flatnonzero(~base)[:2]] = True
    first = tie_p_value([_correct(base)], [_correct(flipped)], higher_is_better=True)
    again = tie_p_value([_correct(base)], [_correct(flipped)], higher_is_better=True)
    assert first == again and 0.05 <= first < 1.0


def test_seeds_are_averaged_per_resample():
    rng = np.random.default_rng(2)
    seeds_a = [rng.random(150) < 0.9 for _ in range(3)]
    seeds_b = [rng.random(150) < 0.6 for _ in range(3)]
    a, b = [_correct(s) for s in seeds_a], [_correct(s) for s in seeds_b]
    assert tie_p_value(a, b, higher_is_better=True) < 0.001
    deltas = bootstrap([a, b], lambda m: m[0] - m[1], n_resamples=200)
    observed = np.mean([s.mean() for s in seeds_a]) - np.mean([s.mean() for s in seeds_b])
    assert deltas.shape == (200,)
    assert np.mean(deltas) == pytest.approx(observed, abs=0.02)
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap([a, [_correct(np.ones(10, dtype=bool))]], lambda m: m[0] - m[1])
