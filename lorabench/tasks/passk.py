"""pass@k, the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models
Trained on Code", Eq. (1): from n samples of which c pass, 1 - C(n-c, k) / C(n, k)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of k samples drawn from the n passes.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which equals the ratio of binomials
    but never forms them (they overflow floats from n of about 1,030).
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every draw of k contains a passing sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (samples n, passing c)."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("pass@k over no problems")
    return sum(values) / len(values)
