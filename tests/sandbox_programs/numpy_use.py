"""Sandbox corpus: numpy use (an ordinary program that must pass in every mode)."""

import numpy as np


def moving_average(values, window):
    values = np.asarray(values, dtype=float)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def check(candidate):
    assert np.allclose(candidate([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])


check(moving_average)
matrix = np.arange(6).reshape(2, 3)
assert matrix.T.shape == (3, 2) and int(matrix.sum()) == 15
assert np.allclose(np.linalg.inv(np.array([[2.0, 0], [0, 4.0]])), [[0.5, 0], [0, 0.25]])
rng = np.random.default_rng(0)
assert rng.integers(0, 10, size=5).shape == (5,)
print(matrix.tolist(), moving_average([2, 4, 6], 3).tolist())
