"""Unbiased pass@k and filtered n@k estimators."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem (Chen et al. 2021).

        pass@k = 1 - C(n - c, k) / C(n, k)

    with n samples of which c are correct. Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i)
    for numerical stability. Requires 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of pass_at_k over problems given (n, c) pairs; every problem must have n >= k."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("pass@k of an empty problem set is undefined")
    return math.fsum(values) / len(values)


def reportable_ks(sample_counts: Sequence[int], ks: Sequence[int] = (1, 10, 100)) -> list[int]:
    """The ks that every problem's sample count allows (k <= min n)."""
    if not sample_counts:
        return []
    smallest = min(sample_counts)
    return [k for k in ks if k <= smallest]


def n_at_k(passed_after_filter: Sequence[bool], n: int) -> float:
    """Filtered n@k of one problem: 1.0 if any of the first n submitted programs passes.

    ``passed_after_filter`` lists the hidden-test outcome of the programs that survived the
    example-test filter, in submission order (k samples were drawn to produce them).
    """
    if n < 1:
        raise ValueError(f"n@k needs n >= 1, got {n}")
    return 1.0 if any(passed_after_filter[:n]) else 0.0
