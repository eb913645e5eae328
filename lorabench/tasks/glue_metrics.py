"""GLUE's metrics with scikit-learn and SciPy (`evaluate.load` fetches metric code from a hub).

Names follow the Hugging Face GLUE metric (`matthews_correlation`, `pearson`, `spearmanr`,
`accuracy`, `f1`), so numbers can be set beside published runs without renaming.

Degenerate inputs: a correlation is undefined when either side is constant (a collapsed
model predicting one class or one score). scikit-learn scores MCC 0 then; MCC is Pearson's
correlation of two binary vectors, so Pearson and Spearman are scored 0 the same way. A
number, never NaN: the trainer picks the best epoch with `max`, which NaN would corrupt, and
0 is what the paper prints for such runs (CoLA 0.00 at lr 1e-6, Table IV).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Scorer = Callable[[Sequence[float], Sequence[float]], float]


def accuracy(labels: Sequence[float], predictions: Sequence[float]) -> float:
    _check(labels, predictions)
    return sum(int(a == b) for a, b in zip(labels, predictions, strict=True)) / len(labels)


def f1(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """F1 of the positive class (1: paraphrase, duplicate); 0 when nothing is positive."""
    from sklearn.metrics import f1_score

    _check(labels, predictions)
    return float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0))


def matthews_correlation(labels: Sequence[float], predictions: Sequence[float]) -> float:
    from sklearn.metrics import matthews_corrcoef

    _check(labels, predictions)
    return float(matthews_corrcoef(labels, predictions))


def pearson(labels: Sequence[float], predictions: Sequence[float]) -> float:
    from scipy.stats import pearsonr

    _check(labels, predictions)
    if _constant(labels) or _constant(predictions):
        return 0.0
    return float(pearsonr(labels, predictions).statistic)


def spearmanr(labels: Sequence[float], predictions: Sequence[float]) -> float:
    from scipy.stats import spearmanr as scipy_spearmanr

    _check(labels, predictions)
    if _constant(labels) or _constant(predictions):
        return 0.0
    return float(scipy_spearmanr(labels, predictions).statistic)


SCORERS: dict[str, Scorer] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def score(
    names: Sequence[str], labels: Sequence[float], predictions: Sequence[float]
) -> dict[str, float]:
    """Each named metric of `predictions` against `labels`."""
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ValueError(f"unknown GLUE metric {unknown[0]!r}; known: {', '.join(SCORERS)}")
    return {name: SCORERS[name](labels, predictions) for name in names}


def _check(labels: Sequence[float], predictions: Sequence[float]) -> None:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise ValueError("cannot score an empty evaluation set")
    if not all(math.isfinite(v) for v in predictions):
        # Only a diverged regression head gets here; a score from it would mean nothing.
        raise ValueError("predictions hold NaN or infinity: the model diverged")


def _constant(values: Sequence[float]) -> bool:
    return min(values) == max(values)
