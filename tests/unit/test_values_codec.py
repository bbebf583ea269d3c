"""executor/harness/values.py: the type-tagged codec between the candidate and the trusted side:
round trips (also through JSON text), numpy values, and the depth and size limits."""

from __future__ import annotations

import builtins
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from executor.harness import values
from executor.harness.values import MAX_DEPTH, MAX_NODES, decode, encode


def through_json(value: Any) -> Any:
    """encode -> JSON text (as on the wire, no NaN allowed) -> decode."""
    return decode(json.loads(json.dumps(encode(value), allow_nan=False)))


def same_typed(a: Any, b: Any) -> bool:
    """Deep equality that also requires identical types (so 1 != 1.0 != True, tuple != list)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same_typed(a[k], b[k]) for k in a)
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return a == b


# ---- round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**53 - 1,
        -(2**53) + 1,
        "",
        "héllo\n\x00☃",
        0.0,
        -0.0,
        1.5,
        1e308,
        5e-324,
        [],
        [1, "a", None, 2.5, [True]],
        (),
        (1,),
        (1, (2, (3, "x"))),
        [(1, 2), [(3,), ()]],
        {},
        {"a": 1, "b": [1, 2]},
        {1: "int key", "1": "str key", None: "none key"},
        {(1, 2): "tuple key", (): [], ("a", (1,)): {"nested": (3,)}},
        {None: 0, 2.5: 1, b"k": 2, frozenset({1}): 3},
        set(),
        {1, 2, 3},
        {(1, 2), "s", None},
        frozenset(),
        frozenset({1, "a", (2, 3)}),
        b"",
        b"\x00\xff binary \x80",
        1 + 2j,
        complex(0, -1.5),
        [[[[[]]]]],
    ],
)
def test_round_trip(value: Any) -> None:
    assert same_typed(decode(encode(value)), value)
    assert same_typed(through_json(value), value)


def test_small_ints_are_json_numbers_big_ones_are_tagged() -> None:
    assert encode(2**53 - 1) == 2**53 - 1
    assert encode(-(2**53) + 1) == -(2**53) + 1
    assert encode(2**53) == {"$int": str(2**53)}
    assert encode(-(2**53)) == {"$int": str(-(2**53))}
    assert encode(2**64 + 1) == {"$int": "18446744073709551617"}


@pytest.mark.parametrize("value", [2**53, 2**53 + 1, -(2**53) - 1, 2**64, -(2**100) + 3, 10**30])
def test_big_ints_round_trip_exactly(value: int) -> None:
    decoded = through_json(value)
    assert type(decoded) is int
    assert decoded == value


def test_ten_thousand_digit_int_round_trips() -> None:
    # past Python's default 4300-digit str()/int() limit
    value = 10**10_000 - 1 - 12345
    encoded = encode(value)
    assert encoded == {"$int": "9" * 9995 + "87654"}
    assert through_json(value) == value
    negative = -value
    assert decode(encode(negative)) == negative


def test_int_digit_limit_is_restored() -> None:
    before = sys.get_int_max_str_digits()
    decode(encode(10**5000))
    assert sys.get_int_max_str_digits() == before


def test_non_finite_floats() -> None:
    assert encode(math.inf) == {"$float": "inf"}
    assert encode(-math.inf) == {"$float": "-inf"}
    assert encode(math.nan) == {"$float": "nan"}
    assert decode({"$float": "inf"}) == math.inf
    assert decode({"$float": "-inf"}) == -math.inf
    assert math.isnan(decode({"$float": "nan"}))
    assert same_typed(
        through_json([math.nan, math.inf, -math.inf, 1.0]), [math.nan, math.inf, -math.inf, 1.0]
    )


def test_encoded_forms() -> None:
    assert encode((1, 2)) == {"$tuple": [1, 2]}
    assert encode([(1,)]) == [{"$tuple": [1]}]
    assert encode({"a": 1}) == {"$dict": [["a", 1]]}
    assert encode({(1, 2): 3}) == {"$dict": [[{"$tuple": [1, 2]}, 3]]}
    assert encode({5}) == {"$set": [5]}
    assert encode(frozenset({5})) == {"$frozenset": [5]}
    assert encode(b"hi") == {"$bytes": "aGk="}
    assert encode(1 + 2j) == {"$complex": [1.0, 2.0]}
    assert encode(complex(math.inf, 0)) == {"$complex": [{"$float": "inf"}, 0.0]}


def test_plain_dicts_and_sets_keep_their_type() -> None:
    decoded = decode(encode({"k": {1}, "f": frozenset({2})}))
    assert type(decoded["k"]) is set
    assert type(decoded["f"]) is frozenset
    assert decode(encode(True)) is True
    assert type(decode(encode(1))) is int
    assert type(decode(encode(1.0))) is float


# ---- numpy ----------------------------------------------------------------------------------------------


def test_numpy_scalars_become_plain() -> None:
    assert encode(np.int64(5)) == 5 and type(decode(encode(np.int64(5)))) is int
    assert encode(np.int32(-3)) == -3
    assert encode(np.uint8(255)) == 255
    assert encode(np.float64(2.5)) == 2.5 and type(decode(encode(np.float64(2.5)))) is float
    assert encode(np.float32(0.5)) == 0.5
    assert encode(np.bool_(True)) is True
    assert encode(np.float64("nan")) == {"$float": "nan"}
    assert encode(np.complex128(1 + 1j)) == {"$complex": [1.0, 1.0]}
    assert encode(np.str_("abc")) == "abc"
    assert encode(np.int64(2**62)) == {"$int": str(2**62)}


def test_numpy_arrays_become_lists() -> None:
    assert encode(np.array([1, 2, 3])) == [1, 2, 3]
    assert encode(np.array([[1.5, 2.0], [3.0, 4.0]])) == [[1.5, 2.0], [3.0, 4.0]]
    assert encode(np.array([True, False])) == [True, False]
    assert encode(np.array([], dtype=np.int64)) == []
    decoded = decode(encode({"a": np.arange(3)}))
    assert decoded == {"a": [0, 1, 2]} and type(decoded["a"]) is list
    assert all(type(x) is int for x in decoded["a"])


def test_numpy_zero_dim_array_becomes_a_scalar() -> None:
    assert encode(np.array(7)) == 7


def test_numpy_subclass_is_not_plain() -> None:
    class MyArray(np.ndarray):
        pass

    assert encode(np.arange(3).view(MyArray)) == {"$unsupported": "MyArray"}


# ---- limits ---------------------------------------------------------------------------------------------


def wrapped(depth: int, wrap: Callable[[Any], Any], innermost: Any) -> Any:
    """``innermost`` wrapped ``depth`` times in ``wrap``."""
    for _ in range(depth):
        innermost = wrap(innermost)
    return innermost


def nested_lists(depth: int) -> list[Any]:
    return wrapped(depth, lambda value: [value], [])


def test_encode_depth_limit() -> None:
    assert through_json(nested_lists(MAX_DEPTH)) == nested_lists(MAX_DEPTH)
    with pytest.raises(ValueError, match="deeper"):
        encode(nested_lists(MAX_DEPTH + 1))


def test_self_referencing_list_hits_the_depth_limit() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        encode(loop)


def test_decode_depth_limit() -> None:
    with pytest.raises(ValueError, match="deeply"):
        decode(nested_lists(MAX_DEPTH + 3))
    tagged = wrapped(MAX_DEPTH + 3, lambda value: {"$tuple": [value]}, 0)
    with pytest.raises(ValueError, match="deeply"):
        decode(tagged)


def test_node_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "MAX_NODES", 10)
    assert encode(list(range(9))) == list(range(9))  # 10 nodes: the list and 9 items
    with pytest.raises(ValueError, match="more than 10"):
        encode(list(range(10)))
    assert decode(list(range(9))) == list(range(9))
    with pytest.raises(ValueError, match="more than 10"):
        decode(list(range(10)))


def test_node_limit_is_shared_across_the_whole_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "MAX_NODES", 10)
    with pytest.raises(ValueError):
        encode([[1, 2, 3], [4, 5, 6], [7, 8]])  # 11 nodes spread over sublists


def test_real_node_limit_is_large() -> None:
    assert MAX_NODES >= 1_000_000
    big = list(range(100_000))
    assert decode(encode(big)) == big


# ---- found while writing these tests -------------------------------------------------------------------


def nested_dicts(depth: int) -> Any:
    return wrapped(depth, lambda value: {0: value}, 0)


def test_nested_dicts_that_encode_also_decode() -> None:
    value = nested_dicts(MAX_DEPTH)
    encoded = encode(value)  # accepted by the encoder
    assert decode(encoded) == value


def test_dicts_within_the_node_limit_also_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "MAX_NODES", 100)
    value = {i: i for i in range(40)}  # encode: 81 nodes
    encoded = encode(value)
    assert decode(encoded) == value


def test_absurdly_long_int_is_rejected_before_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def guarded_int(payload: Any, *args: Any) -> int:
        if isinstance(payload, str) and len(payload) > 1_000_000:
            raise AssertionError(f"int() called on a {len(payload)}-digit string")
        return builtins.int(payload, *args)

    # values looks ``int`` up in its module globals first: this spy only sees the $int conversion
    # (``kind is int`` is not reached for a dict input)
    monkeypatch.setattr(values, "int", guarded_int, raising=False)
    with pytest.raises(ValueError):
        decode({"$int": "7" * 16_000_000})
