"""executor/harness/values.py against hostile values: plain types and subclasses of them are
encoded without ever calling a method the program defined (subclasses by their built-in part),
``Unsupported`` stand-ins equal nothing, and decoding is strict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from executor.harness.values import Unsupported, decode, encode

# ---- exact types only -----------------------------------------------------------------------------------


class IntSubclass(int):
    pass


class AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class ListSubclass(list):  # type: ignore[type-arg]
    pass


class StrSubclass(str):
    pass


class DictSubclass(dict):  # type: ignore[type-arg]
    pass


def test_int_subclass_is_its_int() -> None:
    assert encode(IntSubclass(3)) == 3
    assert type(decode(encode(IntSubclass(3)))) is int


def test_forged_eq_is_unsupported() -> None:
    assert encode(AlwaysEqual()) == {"$unsupported": "AlwaysEqual"}
    assert encode([1, AlwaysEqual()]) == [1, {"$unsupported": "AlwaysEqual"}]


def test_generator_is_unsupported() -> None:
    assert encode(x for x in range(3)) == {"$unsupported": "generator"}


def test_container_subclasses_are_their_plain_part() -> None:
    assert encode(ListSubclass([1, 2])) == [1, 2]
    assert encode(StrSubclass("a")) == "a"
    assert encode(DictSubclass(a=1)) == {"$dict": [["a", 1]]}
    assert [type(decode(encode(x))) for x in (ListSubclass(), StrSubclass(), DictSubclass())] == [
        list,
        str,
        dict,
    ]


def test_other_builtin_types_are_unsupported() -> None:
    assert encode(bytearray(b"x")) == {"$unsupported": "bytearray"}
    assert encode(range(3)) == {"$unsupported": "range"}
    assert encode(object()) == {"$unsupported": "object"}
    assert encode(len) == {"$unsupported": "builtin_function_or_method"}
    assert encode(int) == {"$unsupported": "type"}


def test_unsupported_survives_decoding_as_a_stand_in() -> None:
    decoded = decode(encode([AlwaysEqual()]))
    assert isinstance(decoded[0], Unsupported)
    assert decoded[0].type_name == "AlwaysEqual"
    assert repr(decoded[0]) == "<unsupported AlwaysEqual>"


class Booby:
    """Every dunder a careless encoder could call raises."""

    def __eq__(self, other: object) -> bool:
        raise AssertionError("__eq__ called")

    def __hash__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("__iter__ called")

    def __len__(self) -> int:
        raise AssertionError("__len__ called")

    def __bool__(self) -> bool:
        raise AssertionError("__bool__ called")

    def __repr__(self) -> str:
        raise AssertionError("__repr__ called")

    def __str__(self) -> str:
        raise AssertionError("__str__ called")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"__getattr__({name}) called")


class BoobyList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("__iter__ called")

    def __len__(self) -> int:
        raise AssertionError("__len__ called")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("__eq__ called")

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("__getitem__ called")


def test_encoder_never_calls_user_methods() -> None:
    assert encode(Booby()) == {"$unsupported": "Booby"}
    assert encode(BoobyList([1, 2, 3])) == [1, 2, 3]  # read with list's own C iterator
    # inside plain containers, as keys and as set members
    assert encode([Booby(), BoobyList()]) == [{"$unsupported": "Booby"}, []]
    assert encode({Booby(): Booby()}) == {"$dict": [[{"$unsupported": "Booby"}, {"$unsupported": "Booby"}]]}
    assert encode({Booby()}) == {"$set": [{"$unsupported": "Booby"}]}
    assert encode((Booby(),)) == {"$tuple": [{"$unsupported": "Booby"}]}


def test_type_name_ignores_a_metaclass_name_property() -> None:
    class Meta(type):
        @property
        def __name__(cls) -> str:  # type: ignore[override]
            raise AssertionError("metaclass __name__ called")

    class Sneaky(metaclass=Meta):
        pass

    assert encode(Sneaky()) == {"$unsupported": "Sneaky"}


def test_unsupported_type_name_is_capped() -> None:
    kind = type("N" * 500, (), {})
    encoded = encode(kind())
    assert encoded == {"$unsupported": "N" * 100}
    assert decode({"$unsupported": "x" * 500}).type_name == "x" * 100


# ---- Unsupported equals nothing -------------------------------------------------------------------------


def test_unsupported_equals_nothing() -> None:
    stand_in = Unsupported("Foo")
    assert stand_in != stand_in
    assert not (stand_in == stand_in)
    assert stand_in != Unsupported("Foo")
    for other in (None, 0, 1, "", "Foo", [], {}, AlwaysEqual(), object()):
        assert not (stand_in == other)
        assert stand_in != other
    with pytest.raises(TypeError):
        hash(stand_in)


def test_unsupported_never_matches_an_expected_value() -> None:
    decoded = decode({"$unsupported": "AlwaysEqual"})
    for expected in (1, "x", [1], None, True):
        assert decoded != expected
        assert not (decoded == expected)


# ---- strict decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"$nope": []},  # unknown tag
        {"$list": [1]},
        {"tuple": [1]},
        {"$int": "12a"},  # bad $int
        {"$int": ""},
        {"$int": "1.5"},
        {"$int": 12},
        {"$int": None},
        {"$int": "--5"},
        {"$float": "NaN"},  # only the three exact spellings
        {"$float": "1.5"},
        {"$float": 1.5},
        {"$tuple": [1], "$set": [1]},  # two keys
        {"a": 1, "b": 2},
        {},  # no key
        {"$tuple": "abc"},  # non-list payloads
        {"$tuple": {"$tuple": []}},
        {"$set": 5},
        {"$frozenset": None},
        {"$dict": {"a": 1}},
        {"$complex": "1+2j"},
        {"$complex": [1.0]},  # wrong arity
        {"$complex": [1.0, 2.0, 3.0]},
        {"$dict": [[1, 2, 3]]},  # bad entries
        {"$dict": [1]},
        {"$dict": [[1]]},
        {"$bytes": "not base64!"},
        [1, {"$nope": 0}],  # nested
        {"$tuple": [{"$nope": 0}]},
    ],
)
def test_strict_decoding_rejects(data: Any) -> None:
    with pytest.raises(ValueError):
        decode(data)


@pytest.mark.parametrize("data", [object(), b"bytes", (1, 2), {1, 2}, 1j, AlwaysEqual()])
def test_decoding_rejects_non_json_types(data: Any) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_strict_decoding_accepts_plain_json() -> None:
    assert decode(None) is None
    assert decode(3) == 3
    assert decode("s") == "s"
    assert decode([1, [2.5, None]]) == [1, [2.5, None]]
    assert decode({"$int": "-123"}) == -123
    assert decode({"$dict": []}) == {}


def test_a_plain_json_object_is_not_a_dict() -> None:
    # dicts only cross as {"$dict": ...}; a JSON object with one non-tag key is rejected
    with pytest.raises(ValueError):
        decode({"key": "value"})


# ---- subclasses of built-in types: the built-in part, read without the program's methods ----------


class Trap:
    """Mixed into subclasses: every method a careless encoder might call raises."""

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("__iter__ called")

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError("__getitem__ called")

    def __len__(self) -> int:
        raise AssertionError("__len__ called")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("__eq__ called")

    __hash__ = None  # type: ignore[assignment]

    def items(self) -> Any:
        raise AssertionError("items called")

    def keys(self) -> Any:
        raise AssertionError("keys called")


class TrapInt(int):
    def __int__(self) -> int:
        raise AssertionError("__int__ called")

    def __index__(self) -> int:
        raise AssertionError("__index__ called")

    def __repr__(self) -> str:
        raise AssertionError("__repr__ called")


class TrapFloat(float):
    def __float__(self) -> float:
        raise AssertionError("__float__ called")


class TrapStr(str):
    def __str__(self) -> str:
        raise AssertionError("__str__ called")


class TrapBytes(bytes):
    def __bytes__(self) -> bytes:
        raise AssertionError("__bytes__ called")


class TrapComplex(complex):
    def __complex__(self) -> complex:
        raise AssertionError("__complex__ called")

    @property
    def real(self) -> float:  # type: ignore[override]
        raise AssertionError("real called")


class TrapList(Trap, list):  # type: ignore[misc, type-arg]
    pass


class TrapTuple(Trap, tuple):  # type: ignore[misc, type-arg]
    pass


class TrapDict(Trap, dict):  # type: ignore[misc, type-arg]
    pass


class TrapSet(Trap, set):  # type: ignore[misc, type-arg]
    pass


class TrapCounter(Trap, __import__("collections").Counter):  # type: ignore[misc, type-arg]
    pass


def test_subclass_values_are_read_by_the_base_types_own_methods() -> None:
    assert encode(TrapInt(5)) == 5
    assert encode(TrapInt(2**60)) == {"$int": str(2**60)}
    assert encode(TrapFloat(1.5)) == 1.5
    assert encode(TrapStr("ab")) == "ab"
    assert encode(TrapBytes(b"ab")) == {"$bytes": "YWI="}
    assert encode(TrapComplex(1, 2)) == {"$complex": [1.0, 2.0]}
    assert encode(TrapList([1, TrapInt(2)])) == [1, 2]
    assert encode(TrapTuple((1, 2))) == {"$tuple": [1, 2]}
    assert encode(TrapDict({"a": TrapList([1])})) == {"$dict": [["a", [1]]]}
    assert encode(TrapSet({3})) == {"$set": [3]}
    counter = TrapCounter.__new__(TrapCounter)
    dict.__setitem__(counter, "x", 2)
    assert encode(counter) == {"$counter": [["x", 2]]}


def test_standard_library_containers_keep_their_type_in_the_runner() -> None:
    import collections
    import enum

    point = collections.namedtuple("Point", "x y")
    decoded = decode(encode(point(1, 2)))
    assert decoded == (1, 2) and decoded.x == 1 and type(decoded).__name__ == "Point"
    counter = decode(encode(collections.Counter("abca")))
    assert type(counter) is collections.Counter and counter["a"] == 2 and counter["zz"] == 0
    ordered = decode(encode(collections.OrderedDict([("b", 1), ("a", 2)])))
    assert type(ordered) is collections.OrderedDict and list(ordered) == ["b", "a"]
    assert decode(encode(collections.deque([1, 2]))) == collections.deque([1, 2])
    assert decode(encode(collections.defaultdict(int, {1: 2}))) == {1: 2}

    class Colour(enum.IntEnum):
        RED = 1

    assert encode(Colour.RED) == 1 and type(decode(encode([Colour.RED]))[0]) is int


def test_a_forged_namedtuple_is_refused() -> None:
    with pytest.raises(ValueError):
        decode({"$namedtuple": ["not a name", ["x"], [1]]})
    with pytest.raises(ValueError):
        decode({"$namedtuple": ["P", ["x", "y"], [1]]})
    with pytest.raises(ValueError):
        decode({"$namedtuple": ["P", ["_x"], [1]]})


def test_fractions_and_decimals_cross_as_the_number_they_equal() -> None:
    from decimal import Decimal
    from fractions import Fraction

    assert encode(Fraction(1, 2)) == 0.5 and encode(Fraction(6, 3)) == 2
    assert encode(Decimal("2.50")) == 2.5 and encode(Decimal("7")) == 7
    assert encode(Decimal("-Infinity")) == {"$float": "-inf"}
    assert encode(Fraction(10**400, 3)) == {"$unsupported": "Fraction"}  # no float holds it

    class MyFraction(Fraction):
        pass

    assert encode(MyFraction(1, 2)) == {"$unsupported": "MyFraction"}  # exact types only
