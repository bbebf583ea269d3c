"""Type-tagged JSON codec for values that cross a process boundary.

Encoding runs in the untrusted candidate process and never runs a method the program defined: a
value of an exact built-in type is encoded as itself; a value of a *subclass* of one (Counter,
OrderedDict, defaultdict, a namedtuple, an IntEnum member, any user class deriving from int,
float, complex, str, bytes, list, tuple, dict, set or frozenset) is encoded from its built-in
part, read with the base type's own C methods (``int.__int__``, ``list.__iter__``,
``dict.items``...), so an overridden ``__eq__``, ``__iter__`` or ``__getitem__`` never runs and
what arrives on the trusted side is plain data. Counter, OrderedDict, deque and namedtuples keep
a tag, so the test runner can rebuild them as the standard library's own types (a test may call
``.most_common()`` or read ``.x``). numpy scalars and arrays become Python numbers and lists; a
Fraction or Decimal becomes the int it equals, else the nearest float. Anything else is sent as
``{"$unsupported": type name}``.

Decoding (``decode``) runs in the test runner, inside the sandbox, and is strict: unknown tags,
excessive depth or size raise ``ValueError``. The host never uses it: it decodes with
``executor/plain.py``, which builds no set or dict from program data.

    None/bool/str/finite float -> JSON scalars; int -> JSON number if |x| < 2**53 else {"$int": digits}
    float nan/inf -> {"$float": "nan"|"inf"|"-inf"}; tuple -> {"$tuple": [...]}
    dict -> {"$dict": [[k, v], ...]}; set/frozenset -> {"$set"|"$frozenset": [...]}
    bytes -> {"$bytes": base64}; complex -> {"$complex": [re, im]}; list -> JSON array
    Counter/OrderedDict -> {"$counter"|"$odict": [[k, v], ...]}; deque -> {"$deque": [...]}
    namedtuple -> {"$namedtuple": [type name, [field, ...], [item, ...]]}
"""

from __future__ import annotations

import base64
import collections
import math
import sys
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 200
MAX_NODES = 2_000_000
MAX_INT_DIGITS = 100_000
"""str<->int conversion is quadratic in CPython 3.11: longer integers are not plain data here"""
_SAFE_INT = 2**53


class Unsupported:
    """Decoded stand-in for a value of a type that may not cross; equal to nothing."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<unsupported {self.type_name}>"


class Budget:
    """Elements seen so far (bounded by MAX_NODES), and how many were unsupported."""

    __slots__ = ("nodes", "unsupported")

    def __init__(self) -> None:
        self.nodes = 0
        self.unsupported = 0

    def spend(self, count: int = 1) -> None:
        self.nodes += count
        if self.nodes > MAX_NODES:
            raise ValueError(f"value has more than {MAX_NODES} elements")


_JSON_SCALARS = (str, bool, type(None))
_DECODED_AS_IS = (str, bool, type(None), int, float)


_numpy_scalar_types: frozenset[type] | None = None


def _numpy_plain(value: Any) -> tuple[bool, Any]:
    """numpy values by exact type only (a subclass could override .item() or .tolist())."""
    global _numpy_scalar_types
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return False, None
    kind = type(value)
    if kind is numpy.ndarray:
        return True, value.tolist()
    if _numpy_scalar_types is None:
        _numpy_scalar_types = frozenset(
            t for t in numpy.sctypeDict.values() if isinstance(t, type) and t is not numpy.object_
        )
    if kind in _numpy_scalar_types:
        return True, value.item()
    return False, None


def _encode_items(items: Any, depth: int, budget: Budget) -> list[Any]:
    """The items of a list or tuple; scalars that JSON carries as they are skip the recursion."""
    out = []
    for item in items:
        kind = type(item)
        if kind in _JSON_SCALARS or (kind is int and -_SAFE_INT < item < _SAFE_INT):
            out.append(item)
        else:
            out.append(encode(item, depth + 1, budget))
    budget.spend(len(out))
    return out


def encode(value: Any, depth: int = 0, budget: Budget | None = None) -> Any:
    """Encode plain data; see the module docstring. Raises ValueError past the depth/size limits."""
    budget = budget or Budget()
    budget.spend()
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if -_SAFE_INT < value < _SAFE_INT:
            return value
        if value.bit_length() > MAX_INT_DIGITS * 3.33:
            budget.unsupported += 1
            return unsupported(f"int of more than {MAX_INT_DIGITS} digits")
        return {"$int": _int_digits(value)}
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if kind is list:
        return _encode_items(value, depth, budget)
    if kind is tuple:
        return {"$tuple": _encode_items(value, depth, budget)}
    if kind is dict:
        return {
            "$dict": [[encode(k, depth + 1, budget), encode(v, depth + 1, budget)] for k, v in value.items()]
        }
    if kind is set or kind is frozenset:
        tag = "$set" if kind is set else "$frozenset"
        return {tag: [encode(item, depth + 1, budget) for item in value]}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"$complex": [encode(value.real, depth + 1, budget), encode(value.imag, depth + 1, budget)]}
    converted, plain = _numpy_plain(value)
    if not converted:
        converted, plain = _exact_number(value)
    if converted:
        return encode(plain, depth + 1, budget)
    return _encode_subclass(value, kind, depth, budget)


def _exact_number(value: Any) -> tuple[bool, Any]:
    """A Fraction or Decimal (exact types only) as the int it equals, else as the nearest float:
    ``Fraction(1, 2) == 0.5`` in Python, and a test or an expected value may count on it."""
    kind = type(value)
    for module, name in (("fractions", "Fraction"), ("decimal", "Decimal")):
        loaded = sys.modules.get(module)
        if loaded is not None and kind is getattr(loaded, name, None):
            try:
                if kind.__name__ == "Decimal" and not value.is_finite():
                    return True, float(value)
                integral = value == int(value)
                return True, int(value) if integral else float(value)
            except (ArithmeticError, ValueError):  # a float cannot hold it
                return False, None
    return False, None


_SCALAR_BASES = (
    (int, int.__int__),
    (float, float.__float__),
    (complex, complex.__complex__),
    (str, str.__str__),
    (bytes, bytes.__bytes__),
)


def _encode_subclass(value: Any, kind: type, depth: int, budget: Budget) -> Any:
    """A subclass of a built-in type, read through the base type's C methods (no program code)."""
    for base, read in _SCALAR_BASES:
        if issubclass(kind, base):
            return encode(read(value), depth, budget)
    if issubclass(kind, collections.deque):
        return {"$deque": [encode(item, depth + 1, budget) for item in collections.deque.__iter__(value)]}
    if issubclass(kind, tuple):
        items = [encode(item, depth + 1, budget) for item in tuple.__iter__(value)]
        fields = _namedtuple_fields(kind, len(items))
        return {"$namedtuple": [_type_name(kind), fields, items]} if fields else {"$tuple": items}
    if issubclass(kind, list):
        return [encode(item, depth + 1, budget) for item in list.__iter__(value)]
    if issubclass(kind, dict):
        tag, entries = "$dict", dict.items(value)
        if issubclass(kind, collections.Counter):
            tag = "$counter"
        elif issubclass(kind, collections.OrderedDict):
            tag, entries = "$odict", collections.OrderedDict.items(value)
        return {tag: [[encode(k, depth + 1, budget), encode(v, depth + 1, budget)] for k, v in entries]}
    for base, tag in ((set, "$set"), (frozenset, "$frozenset")):
        if issubclass(kind, base):
            return {tag: [encode(item, depth + 1, budget) for item in base.__iter__(value)]}
    budget.unsupported += 1
    return unsupported(_type_name(kind))


def unsupported(what: str) -> dict[str, str]:
    """The encoding of a value that may not cross (decoded as ``Unsupported(what)``)."""
    return {"$unsupported": what}


def _namedtuple_fields(kind: type, length: int) -> list[str] | None:
    """The ``_fields`` a namedtuple class defines itself, read from its own __dict__ (a
    metaclass other than ``type`` could run code on attribute access: such classes get none)."""
    if type(kind) is not type:
        return None
    fields = type.__dict__["__dict__"].__get__(kind).get("_fields")
    if type(fields) is not tuple or len(fields) != length:
        return None
    if not all(type(f) is str and f.isidentifier() and not f.startswith("_") for f in fields):
        return None
    return list(fields)


def _int_digits(value: int) -> str:
    # str(int) is capped at 4300 digits by default; the limit guards nothing here.
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(value)
    finally:
        sys.set_int_max_str_digits(limit)


def _type_name(kind: type) -> str:
    try:
        name = type.__dict__["__name__"].__get__(kind)
    except Exception:
        name = "object"
    return str(name)[:100]


def decode(data: Any, depth: int = 0, budget: Budget | None = None) -> Any:
    """Inverse of encode, strict: raises ValueError on anything encode cannot produce."""
    budget = budget or Budget()
    budget.spend()
    if depth > MAX_DEPTH + 2:
        raise ValueError("value nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, str, float):
        return data
    if kind is int:
        return data
    if kind is list:
        out = [item if type(item) in _DECODED_AS_IS else decode(item, depth + 1, budget) for item in data]
        budget.spend(len(out))
        return out
    if kind is not dict or len(data) != 1:
        raise ValueError(f"not a tagged value: {str(data)[:80]}")
    ((tag, payload),) = data.items()
    return _decode_tagged(tag, payload, depth, budget)


NOT_SCALAR = object()


def decode_scalar(tag: str, payload: Any) -> Any:
    """The value of a scalar tag ($int, $float, $unsupported, $bytes); NOT_SCALAR for the others.
    Shared with the host's decoder (executor/plain.py)."""
    if tag == "$int":
        if type(payload) is not str or not payload.lstrip("-").isdigit():
            raise ValueError("bad $int")
        if len(payload) > MAX_INT_DIGITS + 1:
            raise ValueError(f"$int longer than {MAX_INT_DIGITS} digits")
        limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        try:
            return int(payload)
        finally:
            sys.set_int_max_str_digits(limit)
    if tag == "$float":
        if payload not in ("nan", "inf", "-inf"):
            raise ValueError("bad $float")
        return float(payload)
    if tag == "$unsupported":
        return Unsupported(str(payload)[:100])
    if tag == "$bytes":
        return base64.b64decode(str(payload), validate=True)
    return NOT_SCALAR


def _decode_tagged(tag: str, payload: Any, depth: int, budget: Budget) -> Any:
    scalar = decode_scalar(tag, payload)
    if scalar is not NOT_SCALAR:
        return scalar
    if type(payload) is not list:
        raise ValueError(f"bad payload for {tag}")
    if tag in _MAPPINGS:
        if any(type(pair) is not list or len(pair) != 2 for pair in payload):
            raise ValueError(f"bad {tag} entry")
        try:
            entries = [(decode(k, depth + 1, budget), decode(v, depth + 1, budget)) for k, v in payload]
            return _MAPPINGS[tag](entries)
        except TypeError as exc:  # an unhashable key
            raise ValueError(f"bad {tag} key: {exc}") from None
    if tag == "$namedtuple":
        return _decode_namedtuple(payload, depth, budget)
    items = [decode(item, depth + 1, budget) for item in payload]
    if tag == "$tuple":
        return tuple(items)
    if tag == "$deque":
        return collections.deque(items)
    try:
        if tag == "$set":
            return set(items)
        if tag == "$frozenset":
            return frozenset(items)
    except TypeError as exc:  # an unhashable member
        raise ValueError(f"bad {tag} member: {exc}") from None
    if tag == "$complex" and len(items) == 2:
        return complex(items[0], items[1])
    raise ValueError(f"unknown tag {tag!r}")


_MAPPINGS: dict[str, Callable[[list[tuple[Any, Any]]], Any]] = {
    "$dict": dict,
    "$counter": lambda entries: collections.Counter(dict(entries)),
    "$odict": collections.OrderedDict,
}
_namedtuple_types: dict[tuple[str, tuple[str, ...]], type] = {}


def _decode_namedtuple(payload: list[Any], depth: int, budget: Budget) -> tuple[Any, ...]:
    """A namedtuple rebuilt as the standard library makes one, from its type name and fields."""
    if len(payload) != 3 or type(payload[0]) is not str or type(payload[1]) is not list:
        raise ValueError("bad $namedtuple")
    name, fields = payload[0], tuple(payload[1])
    if not name.isidentifier() or not all(type(f) is str for f in fields) or type(payload[2]) is not list:
        raise ValueError("bad $namedtuple")
    items = [decode(item, depth + 1, budget) for item in payload[2]]
    if len(items) != len(fields):
        raise ValueError("bad $namedtuple")
    key = (name, fields)
    if key not in _namedtuple_types:
        if len(_namedtuple_types) > 256:
            _namedtuple_types.clear()
        _namedtuple_types[key] = collections.namedtuple(name, fields)  # raises ValueError if bad
    return _namedtuple_types[key](*items)
