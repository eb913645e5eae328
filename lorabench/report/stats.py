"""Uncertainty: Student-t intervals over seeds, and a paired bootstrap over test examples.

* ``t_interval``: mean ± t(0.975, n-1) · s/√n over n ≥ 2 seeds (scipy.stats.t).
* ``bootstrap``: the test examples are resampled with replacement, ``N_RESAMPLES`` times from a
  fixed seed (numpy), one draw of examples per resample shared by every job compared (all were
  scored on the same examples in the same order: paired). On each resample the task's metric is
  recomputed per job from its outcomes (accuracy = mean of correct; MCC, F1, macro-F1, Pearson,
  Spearman, -MSE from prediction and target) and averaged over the seeds of each cell.
* How: a resample is summarised by how often it drew each distinct outcome row (the values of
  every compared job on one example), and every metric is computed from those counts. That is
  the same distribution as drawing example indices (scipy.stats.bootstrap's way, checked in the
  tests), but a classification comparison has a few dozen distinct rows however many examples
  there are, so its 10,000 resamples are multinomial draws over those rows: milliseconds where
  drawing 10,000 x 40,000 indices takes seconds per compared cell.
* ``tie_p_value`` is one-sided: Δ = best − other in the metric's better direction, and
  p = (1 + #{Δ* ≤ 0}) / (B + 1), the share of resamples in which the other cell is at least as
  good, with the +1 correction. The other cell is tied with the best (≈) when p ≥ ``ALPHA``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats

N_RESAMPLES = 10_000
SEED = 0
ALPHA = 0.05
CONFIDENCE = 0.95
# Count cells held at once (resamples x distinct rows): bounds memory, not results.
_BATCH_ELEMENTS = 4_000_000

Arrays = dict[str, np.ndarray]
# A job's metric from its values on the distinct outcome rows (U,) and how often each resample
# drew each row (resamples x U): one value per resample.
Statistic = Callable[[Arrays, np.ndarray], np.ndarray]
Prepared = tuple[Arrays, Statistic]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t confidence interval of the mean over seeds; (nan, nan) with fewer than two."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(data) < 2:
        return (math.nan, math.nan)
    sem = scipy.stats.sem(data)
    if sem == 0:  # identical values: the interval is the point
        return (float(data.mean()), float(data.mean()))
    low, high = scipy.stats.t.interval(confidence, len(data) - 1, loc=data.mean(), scale=sem)
    return (float(low), float(high))


# --------------------------------------------------------------------------- metrics on counts


def _group_sums(w: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Per resample, the draws of each value 0..k-1 of ``codes``: (resamples, k)."""
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out = np.zeros((w.shape[0], k))
    out[:, ordered[starts]] = np.add.reduceat(w[:, order], starts, axis=1)
    return out


def _accuracy(o: Arrays, w: np.ndarray) -> np.ndarray:
    hit = o["correct"] if "correct" in o else o["prediction"] == o["target"]
    return w @ hit.astype(float) / w.sum(1)


def _mse(o: Arrays, w: np.ndarray) -> np.ndarray:
    error = (o["prediction"].astype(float) - o["target"].astype(float)) ** 2
    return -(w @ error) / w.sum(1)  # noop's "score": minus the mean squared error


def _mcc(k: int) -> Statistic:
    """Matthews correlation, multiclass (scikit-learn's formula; 0 where undefined)."""

    def mcc(o: Arrays, w: np.ndarray) -> np.ndarray:
        n = w.sum(1)
        p, t = _group_sums(w, o["prediction"], k), _group_sums(w, o["target"], k)
        correct = w @ (o["prediction"] == o["target"]).astype(float)
        cov_pt = correct * n - (p * t).sum(1)
        denominator = np.sqrt((n * n - (p * p).sum(1)) * (n * n - (t * t).sum(1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, cov_pt / denominator, 0.0)

    return mcc


def _f1(o: Arrays, w: np.ndarray) -> np.ndarray:
    """Binary F1 of label 1 (GLUE's MRPC and QQP), 0 where undefined."""
    pred, true = o["prediction"] == 1, o["target"] == 1
    tp = w @ (pred & true).astype(float)
    denominator = w @ pred.astype(float) + w @ true.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, 0.0)


def _macro_f1(k: int) -> Statistic:
    """Mean F1 over the classes present in the resample (scikit-learn's labels=None)."""

    def macro_f1(o: Arrays, w: np.ndarray) -> np.ndarray:
        pred, true = o["prediction"], o["target"]
        hits = _group_sums(w, np.where(pred == true, pred, k), k + 1)[:, :k]
        present = _group_sums(w, pred, k) + _group_sums(w, true, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(present > 0, 2 * hits / present, np.nan)
        return np.nanmean(f1, axis=1)

    return macro_f1


def _constant(spread: np.ndarray, values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether a weighted sum of squared deviations is rounding noise around constant values."""
    size = np.abs(values).max(axis=-1) + 1e-300
    return spread <= n * (1e-9 * size) ** 2


def _pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson per resample; x, y: (U,) or (resamples, U). 0 where a side is constant,
    as the tasks report it (scipy's pearsonr gives NaN there)."""
    n = w.sum(1)
    if x.ndim == 1 and y.ndim == 1:  # one set of values: weighted sums as matrix products
        x, y = x - x.mean(), y - y.mean()  # centred, so the sums below lose no precision
        mx, my = (w @ x) / n, (w @ y) / n
        sxx, syy = w @ (x * x) - n * mx * mx, w @ (y * y) - n * my * my
        sxy = w @ (x * y) - n * mx * my
    else:  # per-resample values (ranks)
        dx = x - ((w * x).sum(1) / n)[:, None]
        dy = y - ((w * y).sum(1) / n)[:, None]
        sxx, syy, sxy = (w * dx * dx).sum(1), (w * dy * dy).sum(1), (w * dx * dy).sum(1)
    constant = _constant(sxx, x, n) | _constant(syy, y, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(constant, 0.0, sxy / np.sqrt(sxx * syy))


def _midranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) of each row's value within each resample."""
    values, group = np.unique(x, return_inverse=True)
    counts = _group_sums(w, group, len(values))
    below_and_equal = np.cumsum(counts, axis=1)
    return (below_and_equal - (counts - 1) / 2)[:, group]


def _spearman(o: Arrays, w: np.ndarray) -> np.ndarray:
    return _pearson(_midranks(o["prediction"], w), _midranks(o["target"], w), w)


def _base(metric: str) -> str:
    if metric.startswith(("accuracy", "pass@")):
        return "accuracy"
    return metric


def prepare(metric: str, outcome: Arrays, *, primary: bool) -> Prepared | None:
    """(arrays to resample, the metric on them) for one job; None where ``metric`` cannot be
    recomputed from this outcome: a right/wrong outcome says only whether an example was right
    by the task's primary metric, so it serves that metric alone and only as accuracy."""
    base = _base(metric)
    if "correct" in outcome:
        if base != "accuracy" or not primary:
            return None
        # float: HumanEval's is a per-problem share of passing samples, not only 0/1
        return {"correct": np.asarray(outcome["correct"], dtype=float)}, _accuracy
    pred, true = np.asarray(outcome["prediction"]), np.asarray(outcome["target"])
    if base in ("matthews_correlation", "macro_f1"):
        classes, codes = np.unique(np.concatenate([pred, true]), return_inverse=True)
        arrays = {"prediction": codes[: len(pred)], "target": codes[len(pred) :]}
        make = _mcc if base == "matthews_correlation" else _macro_f1
        return arrays, make(len(classes))
    fixed: dict[str, Statistic] = {
        "accuracy": _accuracy,
        "f1": _f1,
        "pearson": lambda o, w: _pearson(
            o["prediction"].astype(float), o["target"].astype(float), w
        ),  # fmt: skip
        "spearmanr": _spearman,
        "score": _mse,
    }
    if base not in fixed:
        return None
    return {"prediction": pred, "target": true}, fixed[base]


# --------------------------------------------------------------------------- bootstrap


def bootstrap(
    cells: Sequence[Sequence[Prepared]],
    combine: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """The paired bootstrap distribution of ``combine`` over cells (module doc): each cell is a
    list of prepared jobs (its seeds); ``combine`` maps the per-cell seed means (cells x
    resamples) to one value per resample. All jobs must hold the same number of examples."""
    jobs = [job for cell in cells for job in cell]
    columns = [arrays[name] for arrays, _ in jobs for name in sorted(arrays)]
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"outcomes of different lengths {sorted(lengths)}: not the same examples")
    n = lengths.pop()
    # The distinct outcome rows (one value per array on one example) and how often each occurs.
    codes = np.column_stack([np.unique(c, return_inverse=True)[1] for c in columns])
    _, first, inverse, counts = np.unique(codes, axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)  # fmt: skip
    distinct = [{name: arrays[name][first] for name in arrays} for arrays, _ in jobs]
    rng = np.random.default_rng(seed)
    # Few distinct rows: multinomial counts over them; many (continuous outcomes): draw example
    # indices and count them, which is cheaper than a multinomial over thousands of categories.
    by_index = len(first) * 10 > n
    chunk = max(1, _BATCH_ELEMENTS // max(len(first), n if by_index else 1))
    out = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        if by_index:
            rows = inverse.ravel()[rng.integers(0, n, (size, n))]
            rows += len(first) * np.arange(size)[:, None]  # one bincount for the whole chunk
            w = np.bincount(rows.ravel(), minlength=size * len(first)).reshape(size, -1)
        else:
            w = rng.multinomial(n, counts / n, size=size)
        w = w.astype(float)
        means, position = [], 0
        for cell in cells:
            values = [stat(distinct[position + i], w) for i, (_, stat) in enumerate(cell)]
            position += len(cell)
            means.append(np.mean(values, axis=0))
        out.append(combine(np.stack(means)))
    return np.concatenate(out)


def percentile_interval(
    distribution: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The percentile bootstrap interval (as scipy.stats.bootstrap's method="percentile")."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return (float(low), float(high))


def tie_p_value(
    best: Sequence[Prepared],
    other: Sequence[Prepared],
    *,
    higher_is_better: bool,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> float:
    """One-sided paired bootstrap p-value that ``other`` is worse than ``best`` (module doc)."""
    sign = 1.0 if higher_is_better else -1.0
    deltas = bootstrap([best, other], lambda m: sign * (m[0] - m[1]), n_resamples=n_resamples,
                       seed=seed)  # fmt: skip
    return float((1 + np.count_nonzero(deltas <= 0)) / (len(deltas) + 1))
