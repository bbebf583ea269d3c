"""coderl/passk.py: pass@k against 1 - C(n-c, k) / C(n, k) computed by hand with math.comb."""

from __future__ import annotations

import itertools
import random
from math import comb

import pytest

from coderl.passk import (
    ALL,
    ProblemSamples,
    filtered_n_at_k,
    mean_pass_at_k,
    pass_at_k,
    reportable_ks,
    summarize,
)


def exact(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


# ---- pass_at_k ------------------------------------------------------------------------------------------


def test_hand_computed_values() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, rel=1e-12)
    # C(7,5) = 21, C(10,5) = 252
    assert comb(7, 5) == 21 and comb(10, 5) == 252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252, rel=1e-12)
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12, rel=1e-12)
    # C(8,2) = 28, C(10,2) = 45
    assert pass_at_k(10, 2, 2) == pytest.approx(1 - 28 / 45, rel=1e-12)
    # one correct out of 4, k = 2: 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(10, 3, 1), (10, 3, 5), (20, 1, 10), (100, 7, 10), (100, 50, 1), (200, 13, 100), (5, 2, 3), (1, 0, 1)],
)
def test_matches_the_binomial_formula(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), rel=1e-9, abs=1e-12)


def test_k_equal_one_is_the_fraction_correct() -> None:
    for n in (1, 3, 10, 37):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, rel=1e-12, abs=1e-15)


def test_no_correct_sample_is_zero() -> None:
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(100, 0, 10) == 0.0


def test_all_correct_is_one() -> None:
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 5, 5) == 1.0


def test_fewer_wrong_than_k_is_one() -> None:
    # n - c < k: every k-subset contains a correct sample, C(n-c, k) = 0
    assert comb(2, 3) == 0
    assert pass_at_k(5, 3, 3) == 1.0
    assert pass_at_k(10, 9, 2) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0
    # n - c == k is not yet certain: 1 - 1 / C(n, k)
    assert pass_at_k(10, 7, 3) == pytest.approx(1 - 1 / comb(10, 3), rel=1e-12)


def test_returns_a_python_float() -> None:
    assert type(pass_at_k(10, 3, 5)) is float
    assert type(pass_at_k(10, 10, 5)) is float


def test_monotone_in_k_and_c() -> None:
    assert pass_at_k(50, 5, 1) < pass_at_k(50, 5, 10) < pass_at_k(50, 5, 40)
    assert pass_at_k(50, 1, 10) < pass_at_k(50, 5, 10) < pass_at_k(50, 30, 10)


def test_large_n_is_stable() -> None:
    # C(n, k) overflows a float here; the product form does not
    n, c, k = 2000, 3, 1000
    assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), rel=1e-9)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [
        (10, 11, 1),  # c > n
        (10, -1, 1),  # c < 0
        (10, 3, 0),  # k < 1
        (10, 3, -2),
        (10, 3, 11),  # k > n
        (0, 0, 1),  # no samples
        (5, 6, 6),
    ],
)
def test_argument_errors(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match=r"0 <= c <= n and 1 <= k <= n"):
        pass_at_k(n, c, k)


# ---- mean_pass_at_k -------------------------------------------------------------------------------------


def test_mean_pass_at_k_hand_computed() -> None:
    # (0.3 + 0.0 + 1.0) / 3
    assert mean_pass_at_k([(10, 3), (5, 0), (4, 4)], 1) == pytest.approx(1.3 / 3, rel=1e-12)
    # k = 5: (1 - 21/252) and (1 - C(5,5)/C(10,5)) = 1 - 1/252
    assert mean_pass_at_k([(10, 3), (10, 5)], 5) == pytest.approx(((1 - 21 / 252) + (1 - 1 / 252)) / 2)


def test_mean_pass_at_k_takes_any_iterable() -> None:
    counts = iter([(10, 3), (10, 3)])
    assert mean_pass_at_k(counts, 1) == pytest.approx(0.3)
    assert type(mean_pass_at_k([(2, 1)], 1)) is float


def test_mean_pass_at_k_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        mean_pass_at_k([], 1)
    with pytest.raises(ValueError):
        mean_pass_at_k([(10, 3), (4, 1)], 5)  # the second problem has n < k


# ---- reportable_ks --------------------------------------------------------------------------------------


def test_reportable_ks() -> None:
    assert reportable_ks([]) == []
    assert reportable_ks([5, 20, 150]) == [1]
    assert reportable_ks([10, 10]) == [1, 10]
    assert reportable_ks([100, 200]) == [1, 10, 100]
    assert reportable_ks([99, 1000]) == [1, 10]
    assert reportable_ks([0]) == []
    assert reportable_ks([7], ks=(1, 2, 5, 8)) == [1, 2, 5]
    assert reportable_ks([7], ks=()) == []


# ---- filtered n@k and the summary ---------------------------------------------------------------------


def _subsets_n_at_k(survived: list[bool], hidden: list[bool], n: int, k: int) -> float:
    """The definition itself: every k-subset, its first n survivors submitted."""
    outcomes = []
    for subset in itertools.combinations(range(len(survived)), k):
        submitted = [i for i in subset if survived[i]][:n]
        outcomes.append(any(hidden[i] for i in submitted))
    return sum(outcomes) / len(outcomes)


def test_filtered_n_at_k_hand_computed() -> None:
    # 4 samples: survivors are 0 (hidden fail) and 2 (hidden pass). 1@2: of the 6 pairs, the
    # solving ones contain 2 and not 0: {1,2}, {2,3} -> 2/6. 2@2: any pair with 2 -> 3/6.
    survived, hidden = [True, False, True, False], [False, True, True, False]
    assert filtered_n_at_k(survived, hidden, 1, 2) == pytest.approx(2 / 6)
    assert filtered_n_at_k(survived, hidden, 2, 2) == pytest.approx(3 / 6)
    # sample 1 passes the hidden tests but fails the examples: never submitted
    assert filtered_n_at_k([False, False], [True, True], 5, 2) == 0.0
    assert filtered_n_at_k([True], [True], 1, 1) == 1.0


def test_filtered_n_at_k_matches_enumeration() -> None:
    rng = random.Random(7)
    for _ in range(200):
        size = rng.randint(1, 8)
        survived = [rng.random() < 0.6 for _ in range(size)]
        hidden = [rng.random() < 0.5 for _ in range(size)]
        n, k = rng.randint(1, 4), rng.randint(1, size)
        expected = _subsets_n_at_k(survived, hidden, n, k)
        assert filtered_n_at_k(survived, hidden, n, k) == pytest.approx(expected, abs=1e-12)


def test_filtered_n_at_k_without_a_filter_is_pass_at_k_when_n_covers_k() -> None:
    hidden = [False, True, False, False, True, False]
    assert filtered_n_at_k([True] * 6, hidden, 3, 3) == pytest.approx(pass_at_k(6, 2, 3))


def test_filtered_n_at_k_errors() -> None:
    with pytest.raises(ValueError, match="filter outcomes"):
        filtered_n_at_k([True], [True, False], 1, 1)
    with pytest.raises(ValueError, match="n@k needs"):
        filtered_n_at_k([True], [True], 0, 1)
    with pytest.raises(ValueError, match="n@k needs"):
        filtered_n_at_k([True], [True], 1, 2)


def test_summarize_by_difficulty() -> None:
    problems = [
        ProblemSamples([True, False], [True, True], "introductory"),
        ProblemSamples([False, False], [False, True], "interview"),
        ProblemSamples([True, True], None, "interview"),
    ]
    summary = summarize(problems, ks=[1, 2, 5], ns=[1, 5])
    assert summary["pass@k"][ALL] == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(2 / 3)}
    assert summary["pass@k"]["introductory"] == {"pass@1": 0.5, "pass@2": 1.0}
    # 1@1: problem 1 submits each sample alone (1/2), problem 2 never solves, problem 3 always
    assert summary["n@k"][ALL]["1@1"] == pytest.approx((0.5 + 0 + 1) / 3)
    # 1@2: problem 1 submits sample 0 (passes) -> 1; n=5 > k=2 is left out
    assert summary["n@k"]["introductory"] == {"1@1": 0.5, "1@2": 1.0}
    assert summary["problems"]["interview"] == {"count": 2.0}
    assert "pass@5" not in summary["pass@k"][ALL]  # more than any problem's samples
