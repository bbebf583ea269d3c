"""executor/compare.py: exact expectations, including every comparator trap of sandboxes.md §4 C9-C16."""

from __future__ import annotations

from typing import Any

import pytest

from coderl.problem import CompareOptions
from executor.compare import MAX_DEPTH, Comparison, compare_stdout, compare_value, truncate_for_message

DEFAULT = CompareOptions()
NO_CASE = CompareOptions(case_sensitive=False)


def same(actual: str, expected: str, options: CompareOptions = DEFAULT) -> bool:
    result = compare_stdout(actual, expected, options)
    assert result.equal == (result.reason == "")
    assert len(result.reason) <= 200
    return result.equal


def value_same(actual: Any, expected: Any, options: CompareOptions = DEFAULT) -> bool:
    result = compare_value(actual, expected, options)
    assert result.equal == (result.reason == "")
    assert len(result.reason) <= 200
    return result.equal


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# ---- stdout ----------------------------------------------------------------------------------------


def test_identical_and_reason_shape() -> None:
    assert compare_stdout("1 2\n3\n", "1 2\n3\n", DEFAULT) == Comparison(True, "")
    assert (
        compare_stdout("1 2\n3 6\n", "1 2\n3 5\n", DEFAULT).reason == "line 2, token 2: expected '5', got '6'"
    )
    assert compare_stdout("1\n2\n3\n", "1\n2\n3\n4\n", DEFAULT).reason == "expected 4 lines, got 3"
    assert compare_stdout("1 2\n", "1 2 3\n", DEFAULT).reason == "line 1: expected 3 tokens, got 2"


def test_c9_prefix_and_trailing_garbage_are_wrong() -> None:
    assert not same("1\n", "1\n2\n3\n")
    assert not same("1\n2\n3\ngarbage\n", "1\n2\n3\n")
    assert not same("", "1\n")
    assert not same("1 2", "1 2 3")


def test_c10_permuted_or_deduplicated_tokens_are_wrong() -> None:
    assert not same("2 1", "1 2")
    assert not same("YES YES NO", "NO YES YES")
    assert not same("YES NO", "YES YES NO")
    assert not same("2\n1\n", "1\n2\n")


def test_c11_case() -> None:
    assert not same("yes", "YES")
    assert not same("aBc", "ABC")
    assert same("yes", "YES", NO_CASE)
    assert same("aBc def", "ABC DEF", NO_CASE)
    assert not same("yes", "no", NO_CASE)


def test_c12_float_tolerance() -> None:
    assert same("0.333333", "0.333333333")
    assert same("1e-07", "0.0000001")
    assert same("-0.0", "0.0")
    assert same("1.5", "1.5000001")
    assert not same("0.1", "0.2")
    assert not same("1.5", "1.51")
    assert not same("1.5", "1.5000001", CompareOptions(float_rel_tol=1e-12, float_abs_tol=0.0))


def test_c13_nan_inf() -> None:
    assert same("nan", "nan")
    assert same("NaN", "nan")
    assert same("inf", "inf")
    assert same("-inf", "-Infinity")
    assert not same("inf", "-inf")
    assert not same("nan", "0")
    assert not same("inf", "1e308")
    assert not same("1e400", "inf")  # a finite number too big for a float is not infinity
    assert not same("1e400", "2e400")
    assert same("1e400", "1.0000000001e400")


@pytest.mark.parametrize("digits", [5000, 100_000])
def test_c13_huge_integers(digits: int) -> None:
    big = "7" * digits
    assert same(big, big)
    assert same(f"{big}\n", f"+{big}")
    assert not same(big[:-1] + "8", big)
    assert not same(big[:-1], big)


def test_c13_integer_forms() -> None:
    assert same("007", "7")
    assert same("-0", "0")
    assert same("+0", "-000")
    assert not same("-7", "7")
    assert same("1", "1.0")  # a float expected: the tolerance applies
    assert not same("10000000000000000000001", "10000000000000000000000")  # both integers: exact


@pytest.mark.parametrize(
    ("actual", "expected"),
    [("1e9", "1000000007"), ("1000000000.0", "1000000000"), ("0.0000009", "0"), ("1e0", "1"), ("5.0", "5")],
)
def test_an_integer_expected_takes_only_that_integer(actual: str, expected: str) -> None:
    # float-looking tokens were once accepted within the float tolerance of an integer answer
    assert not same(actual, expected)
    assert not same(f"1 {actual}\n", f"1 {expected}\n")
    assert (
        compare_stdout(actual, expected, DEFAULT).reason
        == f"line 1, token 1: expected '{expected}', got '{actual}'"
    )


def test_strict_numeric_tokens_only() -> None:
    assert not same("1_000", "1000")  # float() would accept it
    assert not same("0x10", "16")
    assert not same("infinit", "inf")
    assert not same("\u0131nf", "inf")  # dotless i: a case-insensitive regex without re.ASCII matches
    assert not same("\uff11", "1")  # fullwidth digit: float() would accept it
    assert not same("1.0.0", "1.0")


def test_c14_whitespace_and_line_endings() -> None:
    assert same("1 2  \n3\t\n", "1 2\n3\n")
    assert same("1\r\n2\r\n", "1\n2\n")
    assert same("1\r2", "1\n2\n")
    assert same("1\n2", "1\n2\n")
    assert same("1\n2\n\n\n", "1\n2")
    assert same("1 2", "1  2")
    assert same("  1 2", "1 2")
    assert not same("1\n2\n", "1\n\n2\n")  # the blank line in the middle is missing
    assert not same("1 2", "1\n2")
    assert not same("1\u00a02", "1 2")  # a no-break space is part of the token


def test_reasons_are_short() -> None:
    huge = "x" * 1_000_000
    result = compare_stdout(huge + "y", huge, DEFAULT)
    assert not result.equal
    assert len(result.reason) <= 200
    assert "line 1, token 1" in result.reason
    assert len(compare_stdout("a\n" * 100_000, "b\n", DEFAULT).reason) <= 200


def test_truncate_for_message() -> None:
    assert truncate_for_message("short") == "short"
    cut = truncate_for_message("a" * 1000, 50)
    assert len(cut) == 50
    assert cut.startswith("aaa")
    assert "1000" in cut
    assert truncate_for_message("abcdef", 3) == "abc"


# ---- values ----------------------------------------------------------------------------------------


def test_values_basic() -> None:
    assert value_same((1, 2), [1, 2])
    assert value_same([(1, 2), (3, 4)], [[1, 2], [3, 4]])  # APPS list of tuples vs list of lists
    assert not value_same([1, 2], [2, 1])
    assert not value_same([1, 2], [1, 2, 3])
    assert not value_same(True, 1)
    assert not value_same(1, True)
    assert not value_same(0, False)
    assert value_same(True, True)
    assert not value_same("1", 1)
    assert value_same(None, None)
    assert not value_same(None, [])
    assert not value_same("", None)
    assert not value_same([], None)
    assert value_same(b"ab", b"ab")


def test_values_numbers() -> None:
    assert value_same([1.0000001], [1.0])
    assert value_same(1, 1.0)
    assert value_same(2.0, 2)  # exactly the integer, as Python's == says
    assert not value_same(float(10**18), 10**18 + 1)  # no tolerance for an integer answer
    assert not value_same(1.0000001, 1)
    assert not value_same(1e9, 1000000007)
    assert not value_same(float("nan"), 0)
    assert value_same(float("nan"), float("nan"))
    assert not value_same(float("inf"), float("-inf"))
    assert not value_same(0.1, 0.2)
    big = 10**5000
    assert value_same(big, big)
    assert not value_same(big + 1, big)  # ints are exact, whatever their size
    assert not value_same(big, float("inf"))
    assert value_same(complex(1, 2), complex(1, 2.0000001))
    assert not value_same(complex(1, 0), 1.0)
    assert "<int of" in compare_value(big + 1, big, DEFAULT).reason


def test_values_strings() -> None:
    assert not value_same("Yes", "yes")
    assert value_same("Yes", "yes", NO_CASE)
    assert not value_same("yes ", "yes")


def test_apps_single_element_wrap() -> None:
    assert value_same(3, [3])
    assert value_same([3], [[3]])
    assert value_same([3], [3])
    assert not value_same(4, [3])
    assert not value_same(3, [[3]])  # one unwrapping only, as APPS does
    assert not value_same([3], 3)
    assert compare_value(4, [3], DEFAULT).reason == "expected 3, got 4"


def test_values_dicts_and_sets() -> None:
    assert value_same({"a": [1, 2], "b": None}, {"b": None, "a": (1, 2)})
    assert not value_same({"a": 1}, {"a": 1, "b": 2})
    assert not value_same({"a": 1, "c": 2}, {"a": 1, "b": 2})
    assert not value_same({1: "x"}, {True: "x"})
    assert not value_same({"A": 1}, {"a": 1}, NO_CASE)  # keys are exact
    assert compare_value({"a": {"b": [1, 5]}}, {"a": {"b": [1, 6]}}, DEFAULT).reason == (
        "at ['a']['b'][1]: expected 6, got 5"
    )
    assert value_same({1, 2, 3}, {3, 2, 1})
    assert value_same(frozenset({1, 2}), {1, 2})
    assert not value_same({1, 2}, {1, 2, 3})
    assert not value_same({1, 2}, [1, 2])


def test_values_unsupported_types_are_never_equal() -> None:
    class Liar:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    assert not value_same(Liar(), 1)
    assert not value_same([Liar()], [1])

    class MyInt(int):
        pass

    assert not value_same(MyInt(1), 1)


def test_depth_bomb() -> None:
    bomb = nested(5000)
    result = compare_value(bomb, bomb, DEFAULT)
    assert not result.equal
    assert str(MAX_DEPTH) in result.reason
    assert len(result.reason) <= 200
    assert not value_same(nested(5000), [1])
    assert value_same(nested(MAX_DEPTH - 1), nested(MAX_DEPTH - 1))


def test_large_flat_values() -> None:
    data = list(range(200_000))
    assert value_same(data, list(data))
    assert not value_same([*data[:-1], 0], data)
