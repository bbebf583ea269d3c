"""coderl/passk.py: pass@k against 1 - C(n-c, k) / C(n, k) computed by hand with math.comb."""

from __future__ import annotations

from math import comb

import pytest

from coderl.passk import mean_pass_at_k, n_at_k, pass_at_k, reportable_ks


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


# ---- n_at_k ---------------------------------------------------------------------------------------------


def test_n_at_k() -> None:
    submitted = [False, True, False]
    assert n_at_k(submitted, 1) == 0.0
    assert n_at_k(submitted, 2) == 1.0
    assert n_at_k(submitted, 5) == 1.0  # n beyond the list looks at everything
    assert n_at_k([True], 1) == 1.0
    assert n_at_k([False, False], 2) == 0.0
    assert n_at_k([], 1) == 0.0  # nothing survived the filter


def test_n_at_k_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        n_at_k([True], 0)
    with pytest.raises(ValueError):
        n_at_k([True], -1)
