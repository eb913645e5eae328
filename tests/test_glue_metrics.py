"""GLUE metrics against values computed by hand, and their degenerate cases."""

import math

import pytest

from lorabench.tasks.glue_metrics import (
    accuracy,
    f1,
    matthews_correlation,
    pearson,
    score,
    spearmanr,
)

# Confusion matrix of the pair below: TP=3 (rows 0-2), FN=1 (row 3), FP=1 (row 4), TN=5.
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PREDICTIONS = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]


def test_accuracy_f1_and_mcc_from_a_confusion_matrix():
    # accuracy = (TP + TN) / n = 8 / 10
    assert accuracy(LABELS, PREDICTIONS) == 0.8
    # F1 = 2 TP / (2 TP + FP + FN) = 6 / 8
    assert f1(LABELS, PREDICTIONS) == 0.75
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (15 - 1) / sqrt(4*4*6*6)
    assert matthews_correlation(LABELS, PREDICTIONS) == pytest.approx(14 / 24, abs=1e-12)


def test_f1_scores_the_positive_class_only():
    # Swapping the classes gives the negative class's F1: TP'=5, FP'=1, FN'=1 -> 10/12.
    flipped = ([1 - v for v in LABELS], [1 - v for v in PREDICTIONS])
    assert f1(*flipped) == pytest.approx(10 / 12, abs=1e-12)
    # MCC is symmetric in the classes.
    assert matthews_correlation(*flipped) == pytest.approx(14 / 24, abs=1e-12)


def test_accuracy_on_three_classes():
    assert accuracy([0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]) == pytest.approx(4 / 6)


def test_pearson_and_spearman_from_sums():
    # x = 1..4, mean 2.5, dx = (-1.5, -.5, .5, 1.5), sum dx^2 = 5.
    # y = (1, 2, 3, 10), mean 4, dy = (-3, -2, -1, 6), sum dy^2 = 50, sum dx dy = 14.
    # Pearson = 14 / sqrt(5 * 50) = 14 / sqrt(250); the ranks agree, so Spearman = 1.
    x, y = [1, 2, 3, 4], [1, 2, 3, 10]
    assert pearson(x, y) == pytest.approx(14 / math.sqrt(250), abs=1e-12)
    assert spearmanr(x, y) == pytest.approx(1.0, abs=1e-12)
    # y' = (1, 3, 2, 4): dy = (-1.5, .5, -.5, 1.5), sum dx dy = 4, sum dy^2 = 5 -> 4 / 5.
    assert pearson(x, [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-12)
    assert pearson(x, [4, 3, 2, 1]) == pytest.approx(-1.0, abs=1e-12)


def test_spearman_gives_ties_their_mean_rank():
    # Ranks of (1, 2, 2, 3) are (1, 2.5, 2.5, 4): d = (-1.5, 0, 0, 1.5), sum d^2 = 4.5;
    # against ranks 1..4 (sum d^2 = 5, sum of products = 4.5): 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearmanr([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-12)


def test_mcc_is_pearson_on_binary_vectors():
    # MCC is the phi coefficient: the same number from the correlation formula.
    assert pearson(LABELS, PREDICTIONS) == pytest.approx(
        matthews_correlation(LABELS, PREDICTIONS), abs=1e-12
    )


@pytest.mark.parametrize("metric", [matthews_correlation, pearson, spearmanr])
def test_a_constant_side_scores_zero_not_nan(metric):
    # A collapsed model (one class, one score) has no correlation to speak of: 0, as
    # scikit-learn defines MCC and the paper prints for CoLA at lr 1e-6.
    assert metric(LABELS, [0] * len(LABELS)) == 0.0
    assert metric(LABELS, [1] * len(LABELS)) == 0.0
    assert metric([1] * 4, [0, 1, 1, 0]) == 0.0


def test_f1_is_zero_when_nothing_is_predicted_positive():
    assert f1(LABELS, [0] * len(LABELS)) == 0.0
    assert accuracy(LABELS, [0] * len(LABELS)) == 0.6


def test_score_returns_each_named_metric_in_order():
    got = score(("f1", "accuracy"), LABELS, PREDICTIONS)
    assert list(got) == ["f1", "accuracy"]
    assert got == {"f1": 0.75, "accuracy": 0.8}
    assert all(type(v) is float for v in score(("matthews_correlation",), LABELS, LABELS).values())


def test_bad_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty evaluation set"):
        pearson([], [])
    with pytest.raises(ValueError, match="NaN or infinity"):
        pearson([1.0, 2.0], [0.5, math.nan])
    with pytest.raises(ValueError, match="unknown GLUE metric 'mcc'; known: accuracy"):
        score(("mcc",), LABELS, PREDICTIONS)
