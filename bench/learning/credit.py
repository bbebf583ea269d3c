"""The critic's share's pure math (``critic_share.py``): where a failing program leaves the passing
program closest to it, what the critic's token weights are there, and the binary pass/fail view
of the critic's classes.

A failing sample W^f and a passing sample W^p of one problem share a prefix of tokens; the first
token where they differ, d, is where W^f goes its own way. The learner weights each token of W^f
by q_hat(w_j) = softmax(v_j)[u] (u: W^f's observed class; critic/loss.py ``token_values``); with
no critic every weight is 1. If the critic put the credit where programs diverge, q_hat[d] would
stand out from the rest of the program: ratio q_hat[d] / mean_j q_hat[j] above 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PairCredit",
    "closest_passing",
    "common_prefix_length",
    "divergence_pairs",
    "pair_credit",
    "passed_labels",
    "summarize_credit",
]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading tokens a and b share: max k such that a[:k] == b[:k]. It is also the
    index of the first differing token, d, when k < min(len(a), len(b))."""
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def closest_passing(failing: Sequence[int], passing: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """(index into ``passing``, d) of the passing sample sharing the longest token prefix with
    ``failing`` (the first one on ties), d = that shared length; None when there is no passing
    sample or ``failing`` is a prefix of it (d = len(failing): no failing token differs)."""
    if not passing:
        return None
    best = max(range(len(passing)), key=lambda i: (common_prefix_length(failing, passing[i]), -i))
    d = common_prefix_length(failing, passing[best])
    return None if d >= len(failing) else (best, d)


def divergence_pairs(programs: Sequence[Sequence[int]], passed: Sequence[bool]) -> list[tuple[int, int, int]]:
    """(failing index, closest passing index, d) for each failing program of one problem, indices
    into ``programs``; empty unless the problem has both passing and failing programs."""
    if len(programs) != len(passed):
        raise ValueError(f"{len(programs)} programs but {len(passed)} outcomes")
    passing = [i for i, ok in enumerate(passed) if ok]
    pairs = []
    for index, ok in enumerate(passed):
        found = None if ok else closest_passing(programs[index], [programs[i] for i in passing])
        if found is not None:
            pairs.append((index, passing[found[0]], found[1]))
    return pairs


@dataclass(frozen=True)
class PairCredit:
    """The weights of one failing program around its divergence point d."""

    at_d: float
    """q_hat[d]"""
    mean: float
    """mean_j q_hat[j] over the program's tokens"""
    jump: float | None
    """q_hat[d] - q_hat[d - 1]; None when d = 0"""

    @property
    def ratio(self) -> float:
        """q_hat[d] / mean_j q_hat[j] (1 for uniform weights; inf when the mean is 0)."""
        return self.at_d / self.mean if self.mean > 0 else float("inf")


def pair_credit(values: Sequence[float], d: int) -> PairCredit:
    """q_hat[d], mean_j q_hat[j] = (1/n) sum_j q_hat[j] and q_hat[d] - q_hat[d-1] of one failing
    program's token weights ``values`` (n = len(values) > d)."""
    if not 0 <= d < len(values):
        raise ValueError(f"d = {d} is outside the program's {len(values)} tokens")
    return PairCredit(
        at_d=float(values[d]),
        mean=sum(values) / len(values),
        jump=float(values[d] - values[d - 1]) if d > 0 else None,
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_credit(pairs: Sequence[PairCredit]) -> dict[str, Any]:
    """Over P pairs: mean_at_d = (1/P) sum q_hat[d]; mean_weight = (1/P) sum mean_j q_hat[j];
    mean_ratio = (1/P) sum q_hat[d] / mean_j q_hat[j]; above = share of pairs with q_hat[d] >
    mean_j q_hat[j]; mean_jump = mean of q_hat[d] - q_hat[d-1] over the pairs with d > 0. The
    means are None without pairs; uniform weights (no critic) give ratio 1, above 0, jump 0."""
    jumps = [p.jump for p in pairs if p.jump is not None]
    return {
        "pairs": len(pairs),
        "mean_at_d": _mean([p.at_d for p in pairs]),
        "mean_weight": _mean([p.mean for p in pairs]),
        "mean_ratio": _mean([p.ratio for p in pairs]),
        "above": _mean([float(p.at_d > p.mean) for p in pairs]),
        "mean_jump": _mean(jumps),
        "jump_pairs": len(jumps),
    }


def passed_labels(classes: Sequence[int], passed_class: int) -> list[int]:
    """The binary view of critic classes: 1 where the class is ``passed_class`` (the last class of
    either head), else 0; it applies to the observed labels and to the predictions alike."""
    return [int(c == passed_class) for c in classes]
