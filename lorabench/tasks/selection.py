"""The `select` split: examples held out from training, read only to choose epochs and learning
rates, so that the reported (`test`) numbers are not also the ones the choice was made on.

Where a benchmark has no separate dev set, `carve` takes it out of the training pool: a fixed
seed (never the job's), so every job of a task holds out the same examples; stratified by label
where the task classifies; `fraction` of the pool, at least one example, at most `cap`. The
rest is the training pool that `train_size` draws from as before. A job with `select_split`
off carves nothing, so its training data are exactly those of the days before this split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# The size rule lives in the catalog, which `plan --dry-run` reads without torch.
from lorabench.catalog.task import SELECT_CAP, SELECT_FRACTION, select_size

SELECT_SEED = 1  # apart from the subset seeds (0), so a held-out set is not also a subset's
GENERATION_SELECT_CAP = 200  # each example costs a generation (hundreds of forward passes)


def carve(
    indices: Sequence[int],
    labels: Sequence[int] | None = None,
    *,
    fraction: float = SELECT_FRACTION,
    cap: int = SELECT_CAP,
) -> tuple[list[int], list[int]]:
    """(training pool, select) of `indices`, both sorted; `labels[i]` is index i's class (None:
    not a classification task, or no stratification wanted)."""
    pool = list(indices)
    size = select_size(len(pool), fraction=fraction, cap=cap)
    if size == 0:
        return sorted(pool), []
    held: list[int] | None = None
    if labels is not None:
        from sklearn.model_selection import train_test_split

        try:
            _, held = train_test_split(
                pool, test_size=size, random_state=SELECT_SEED, stratify=[labels[i] for i in pool]
            )
        except ValueError:  # fewer held-out rows than classes, or a class with one member
            held = None
    if held is None:
        held = random.Random(SELECT_SEED).sample(pool, size)
    chosen = set(held)
    return sorted(i for i in pool if i not in chosen), sorted(held)
