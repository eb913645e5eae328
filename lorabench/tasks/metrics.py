"""Classification metrics, computed with scikit-learn (no hub access, unlike `evaluate.load`)."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise ValueError("cannot score an empty evaluation set")
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
