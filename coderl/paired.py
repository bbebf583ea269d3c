"""Paired comparison of two policies on the same problems: did B measurably beat A?

Each problem is judged once per policy (greedy pass@1), so the outcomes pair up. Only the
discordant problems carry information: ``wins`` (B passes, A fails) and ``losses`` (A passes, B
fails). Under "no difference", each discordant problem is a fair coin, which gives the exact
two-sided sign test (McNemar's exact test). Pairs from several seeds pool into one test, each
(seed, problem) pair counting once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import comb

from .outcomes import Verdict

__all__ = ["PairedCounts", "paired_counts", "passed_by_task", "sign_test_p"]


@dataclass(frozen=True)
class PairedCounts:
    pairs: int
    a_passed: int
    b_passed: int
    wins: int
    """problems B passes and A fails"""
    losses: int
    """problems A passes and B fails"""

    @property
    def p_value(self) -> float:
        return sign_test_p(self.wins, self.losses)


def passed_by_task(verdicts: Mapping[str, str]) -> dict[str, bool]:
    """task id -> passed, from an evaluation record's task id -> verdict name."""
    return {task: verdict == Verdict.PASSED.value for task, verdict in verdicts.items()}


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: p = min(1, 2 * sum_{i=0..k} C(m, i) / 2^m), m = wins + losses,
    k = min(wins, losses); 1.0 when there is no discordant pair."""
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be >= 0, got wins={wins}, losses={losses}")
    m, k = wins + losses, min(wins, losses)
    if m == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2**m)


def paired_counts(pairs: Iterable[tuple[Mapping[str, bool], Mapping[str, bool]]]) -> PairedCounts:
    """Pool (A, B) outcome maps, task id -> passed, one per seed; each pair must judge the same
    problems."""
    total = a_passed = b_passed = wins = losses = 0
    for a, b in pairs:
        if a.keys() != b.keys():
            missing = sorted(a.keys() ^ b.keys())
            raise ValueError(f"the runs judged different problems, e.g. {missing[:3]}")
        for task, a_ok in a.items():
            b_ok = b[task]
            total += 1
            a_passed += a_ok
            b_passed += b_ok
            wins += b_ok and not a_ok
            losses += a_ok and not b_ok
    return PairedCounts(total, a_passed, b_passed, wins, losses)
