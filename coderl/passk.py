"""Unbiased pass@k and filtered n@k estimators."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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


def filtered_n_at_k(survived: Sequence[bool], hidden_passed: Sequence[bool], n: int, k: int) -> float:
    """Expected filtered n@k of one problem over every k-subset of its N samples, exactly.

    The paper's n@k (AlphaCode's protocol): draw k programs, keep those that pass the example
    tests, submit the first n of them in ranking order, and count the problem solved if a submitted
    program passes the hidden tests. The samples are given in ranking order (best first); with
    i.i.d. samples in the order they were drawn, that order is the random ranking. Averaged over all
    C(N, k) subsets instead of one draw, so the estimate has no sampling noise of its own:

        n@k = sum_q [h_q] * sum_{j=0}^{n-1} C(a_q - b_q, j) * C(N - a_q - 1, k - 1 - j) / C(N, k)

    where q runs over the surviving programs that pass the hidden tests, a_q is the number of
    surviving programs ranked before q and b_q how many of those pass the hidden tests: q is the
    submission that solves the problem when it is drawn, no better-ranked hidden-passing survivor is
    drawn, and fewer than n better-ranked failing survivors are (j of them). A program that fails
    the example tests is never submitted, whatever its hidden outcome.
    """
    if len(survived) != len(hidden_passed):
        raise ValueError(f"{len(survived)} filter outcomes for {len(hidden_passed)} hidden outcomes")
    total = len(survived)
    if n < 1 or not 1 <= k <= total:
        raise ValueError(f"n@k needs n >= 1 and 1 <= k <= N, got n={n} k={k} N={total}")
    subsets = math.comb(total, k)
    ahead = ahead_passing = 0  # surviving programs ranked before this one, and those passing
    solved = 0
    for kept, passed in zip(survived, hidden_passed, strict=True):
        if not kept:
            continue
        if passed:
            failing_ahead = ahead - ahead_passing
            rest = total - ahead - 1
            solved += sum(math.comb(failing_ahead, j) * math.comb(rest, k - 1 - j) for j in range(min(n, k)))
            ahead_passing += 1
        ahead += 1
    return solved / subsets


ALL = "all"
"""the group of every problem, beside one group per difficulty"""


@dataclass(frozen=True)
class ProblemSamples:
    """One problem's evaluated programs, in ranking order (best first)."""

    hidden_passed: Sequence[bool]
    example_passed: Sequence[bool] | None = None
    """None: the problem has no example tests, so the filter keeps every program"""
    difficulty: str | None = None


def summarize(
    problems: Sequence[ProblemSamples], ks: Sequence[int], ns: Sequence[int] = (1, 5)
) -> dict[str, dict[str, dict[str, float]]]:
    """pass@k and filtered n@k, overall (``all``) and per difficulty, for every k that each
    problem of the group has samples for (and n <= k).

    Returns ``{"pass@k": {group: {"pass@5": v}}, "n@k": {group: {"1@5": v}}, "problems":
    {group: {"count": m}}}``; every value is a mean over the group's problems.
    """
    groups: dict[str, list[ProblemSamples]] = {ALL: list(problems)}
    for problem in problems:
        if problem.difficulty is not None:
            groups.setdefault(problem.difficulty, []).append(problem)
    summary: dict[str, dict[str, dict[str, float]]] = {"pass@k": {}, "n@k": {}, "problems": {}}
    for name, members in groups.items():
        if not members:
            continue
        usable = reportable_ks([len(p.hidden_passed) for p in members], sorted(set(ks)))
        summary["problems"][name] = {"count": float(len(members))}
        summary["pass@k"][name] = {
            f"pass@{k}": mean_pass_at_k(((len(p.hidden_passed), sum(p.hidden_passed)) for p in members), k)
            for k in usable
        }
        summary["n@k"][name] = {
            f"{n}@{k}": math.fsum(_filtered(p, n, k) for p in members) / len(members)
            for k in usable
            for n in sorted(set(ns))
            if n <= k
        }
    return summary


def _filtered(problem: ProblemSamples, n: int, k: int) -> float:
    survived = problem.example_passed
    if survived is None:
        survived = [True] * len(problem.hidden_passed)
    return filtered_n_at_k(survived, problem.hidden_passed, n, k)
