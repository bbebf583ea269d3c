"""Program data on the host, decoded without hashing anything a program chose.

A program's returned value arrives in the tagged JSON of ``executor/harness/values.py``. Building
Python sets or dicts from it would hash values the program picked, and integers that are
multiples of 2**61 - 1 (or floats, tuples and frozensets built from them) all share one hash:
tens of thousands of them make a set take seconds to build, a quadratic stall of the host. So
here sets decode to ``SetValue`` and dicts to ``DictValue``, plain tuples of their members, and
``compare.py`` compares them by sorting canonical keys (``canonical_key``): decoding is linear in
the size of the data, comparing is O(n log n) comparisons, whatever the values, and both stop at
``MAX_NODES`` elements and ``MAX_DEPTH`` levels.

Guarantees: no program-chosen value is hashed on the host (JSON object keys from the wire are
strings, hashed with the interpreter's randomised SipHash), and decoding rejects anything the
encoder cannot produce. Not guaranteed: that a value is readable (too large, too deep or
malformed data raise ValueError, which the judge turns into a wrong answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from executor.harness import values

MAX_DEPTH = 202
MAX_NODES = 2_000_000
_DICT_TAGS = ("$dict", "$counter", "$odict")
_SEQUENCE_TAGS = ("$tuple", "$deque")


@dataclass(frozen=True, slots=True, eq=False)
class SetValue:
    """A decoded set or frozenset: its members in wire order (a forged payload may repeat one)."""

    items: tuple[Any, ...]
    frozen: bool

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True, eq=False)
class DictValue:
    """A decoded dict (also Counter, OrderedDict): its (key, value) pairs in wire order."""

    pairs: tuple[tuple[Any, Any], ...]

    def __len__(self) -> int:
        return len(self.pairs)


Unsupported = values.Unsupported
"""a value of a type that may not cross (``{"$unsupported": name}``); equal to nothing"""


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValueError(f"value has more than {MAX_NODES} elements")


def decode_untrusted(data: Any) -> Any:
    """Tagged JSON from a program -> plain data with ``SetValue``/``DictValue`` for sets and dicts.
    namedtuple and deque become tuple and list. Raises ValueError on anything malformed."""
    try:
        return _decode(data, 0, _Budget())
    except RecursionError:
        raise ValueError("value nested too deeply") from None


def _decode(data: Any, depth: int, budget: _Budget) -> Any:
    budget.spend()
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, str, int, float):
        return data
    if kind is list:
        return [_decode(item, depth + 1, budget) for item in data]
    if kind is not dict or len(data) != 1:
        raise ValueError(f"not a tagged value: {str(data)[:80]}")
    ((tag, payload),) = data.items()
    scalar = values.decode_scalar(tag, payload)
    if scalar is not values.NOT_SCALAR:
        return scalar
    if type(payload) is not list:
        raise ValueError(f"bad payload for {tag}")
    if tag in _DICT_TAGS:
        if any(type(pair) is not list or len(pair) != 2 for pair in payload):
            raise ValueError(f"bad {tag} entry")
        entries = tuple((_decode(k, depth + 1, budget), _decode(v, depth + 1, budget)) for k, v in payload)
        for key, _ in entries:
            _require_hashable(key, tag)
        return DictValue(entries)
    if tag == "$namedtuple":
        if len(payload) != 3 or type(payload[2]) is not list:
            raise ValueError("bad $namedtuple")
        return tuple(_decode(item, depth + 1, budget) for item in payload[2])
    items = [_decode(item, depth + 1, budget) for item in payload]
    if tag in _SEQUENCE_TAGS:
        return tuple(items) if tag == "$tuple" else items
    if tag in ("$set", "$frozenset"):
        for item in items:
            _require_hashable(item, tag)
        return SetValue(tuple(items), tag == "$frozenset")
    if tag == "$complex" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(items[0], items[1])
    raise ValueError(f"unknown tag {tag!r}")


def _require_hashable(value: Any, tag: str) -> None:
    """What Python could not put in a set or use as a key cannot arrive as one: malformed."""
    kind = type(value)
    if kind is tuple:
        for item in value:
            _require_hashable(item, tag)
    elif kind in (list, DictValue) or (kind is SetValue and not value.frozen):
        raise ValueError(f"bad {tag} member: unhashable {type_label(value)}")
    elif kind is Unsupported:
        raise ValueError(f"bad {tag} member: {value.type_name}")


def type_label(value: Any) -> str:
    """The Python type name a decoded value stands for."""
    kind = type(value)
    if kind is SetValue:
        return "frozenset" if value.frozen else "set"
    if kind is DictValue:
        return "dict"
    if kind is Unsupported:
        return value.type_name
    return kind.__name__


class Unhashable(ValueError):
    """A set member or dict key of a type Python could not hash (list, dict, set)."""


def canonical_key(value: Any, depth: int = 0) -> tuple[Any, ...]:
    """A sortable key equal for two hashable values iff they are the same value of the same
    type: types are kept apart (1, 1.0 and True differ), nan equals nan, str and bytes exact.
    Works on real Python values (the expected side) and decoded ones alike; raises Unhashable
    for what cannot be a member or key."""
    if depth > MAX_DEPTH:
        raise Unhashable("nested too deeply")
    kind = type(value)
    if value is None:
        return (0,)
    if kind is bool:
        return (1, int(value))
    if kind is int:
        return (2, value)
    if kind is float:
        return (3, *_float_key(value))
    if kind is complex:
        return (4, *_float_key(value.real), *_float_key(value.imag))
    if kind is str:
        return (5, value)
    if kind is bytes:
        return (6, value)
    if kind is tuple:
        return (7, tuple(canonical_key(item, depth + 1) for item in value))
    if kind is frozenset or (kind is SetValue and value.frozen):
        return (8, tuple(unique_sorted_keys(value, depth + 1)))
    raise Unhashable(f"unhashable member {kind.__name__}")


def _float_key(x: float) -> tuple[int, float]:
    return (1, 0.0) if math.isnan(x) else (0, x)


def members(value: Any) -> tuple[Any, ...]:
    return value.items if type(value) is SetValue else tuple(value)


def unique_sorted_keys(value: Any, depth: int = 0) -> list[tuple[Any, ...]]:
    """Canonical keys of a set's members, sorted, repeats dropped (as a set would)."""
    keys = sorted(canonical_key(item, depth) for item in members(value))
    return [key for i, key in enumerate(keys) if i == 0 or key != keys[i - 1]]


def pairs(value: Any) -> tuple[tuple[Any, Any], ...]:
    return value.pairs if type(value) is DictValue else tuple(value.items())
