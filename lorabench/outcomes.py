"""Per-example evaluation outcomes as bytes for the ``outcome`` table, and back.

An outcome is ``{"correct": [n]}`` (right/wrong per example as bool, or the share of an
example's samples that were right, e.g. HumanEval's c / n per problem) or
``{"prediction": float[n], "target": float[n]}`` (what a metric such as MCC or Pearson needs),
in the order of the task's fixed evaluation set. Stored as a compressed ``numpy.savez``
archive, read back without pickle.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

KINDS = (("correct",), ("prediction", "target"))


def encode_outcomes(outcomes: Mapping[str, np.ndarray | list]) -> bytes:
    arrays = {name: np.asarray(values) for name, values in outcomes.items()}
    _check(arrays)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode_outcomes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    _check(arrays)
    return arrays


def _check(arrays: Mapping[str, np.ndarray]) -> None:
    if tuple(sorted(arrays)) not in {tuple(sorted(k)) for k in KINDS}:
        raise ValueError(
            f"outcomes hold {sorted(arrays)}; expected 'correct' or 'prediction' and 'target'"
        )
    lengths = {len(a) for a in arrays.values()}
    if any(a.ndim != 1 for a in arrays.values()) or len(lengths) != 1:
        raise ValueError("outcome arrays must be one-dimensional and of one length")
