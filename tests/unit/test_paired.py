"""coderl/paired.py: the exact sign test against hand-computed values, and the pooling of seeds."""

from __future__ import annotations

import pytest

from coderl.paired import paired_counts, passed_by_task, sign_test_p


@pytest.mark.parametrize(
    ("wins", "losses", "expected"),
    [
        (5, 0, 2 / 32),  # m=5, k=0: 2 * C(5,0) / 2^5
        (0, 5, 2 / 32),  # symmetric
        (10, 0, 2 / 1024),
        (3, 1, 2 * (1 + 4) / 16),  # m=4, k=1: 2 * (C(4,0) + C(4,1)) / 2^4 = 0.625
        (2, 2, 1.0),  # 2 * 11/16 > 1, capped
        (0, 0, 1.0),  # no discordant pair: no evidence either way
        (1, 0, 1.0),  # 2 * 1/2
    ],
)
def test_sign_test_matches_hand_computed_values(wins: int, losses: int, expected: float) -> None:
    assert sign_test_p(wins, losses) == pytest.approx(expected)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="counts"):
        sign_test_p(-1, 3)


def test_seeds_pool_into_one_count_of_discordant_problems() -> None:
    seed0 = ({"a": True, "b": False, "c": False}, {"a": True, "b": True, "c": False})
    seed1 = ({"a": True, "b": True, "c": False}, {"a": False, "b": True, "c": True})
    counts = paired_counts([seed0, seed1])
    assert (counts.pairs, counts.a_passed, counts.b_passed) == (6, 3, 4)
    assert (counts.wins, counts.losses) == (2, 1)  # b@0 and c@1 won, a@1 lost
    assert counts.p_value == pytest.approx(1.0)  # m=3, k=1: 2 * (1 + 3) / 8 > 1


def test_runs_on_different_problems_are_refused() -> None:
    with pytest.raises(ValueError, match="different problems"):
        paired_counts([({"a": True}, {"b": True})])


def test_only_the_passed_verdict_counts_as_passed() -> None:
    verdicts = {"a": "PASSED", "b": "FAILED_TEST", "c": "TIMEOUT", "d": "SANDBOX_ERROR"}
    assert passed_by_task(verdicts) == {"a": True, "b": False, "c": False, "d": False}
