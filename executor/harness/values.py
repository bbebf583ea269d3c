"""Type-tagged JSON codec for values that cross a process boundary.

Encoding runs in the untrusted candidate process and only accepts exact built-in types
(``type(x) is int``, never a subclass), so no candidate-defined method runs while encoding and
no object with a forged ``__eq__`` can cross: what arrives on the trusted side is plain data.
numpy scalars and arrays become Python numbers and lists. Anything else is sent as
``{"$unsupported": type name}``.

Decoding runs on the trusted side and is strict: unknown tags, excessive depth or size raise
``ValueError``.

    None/bool/str/finite float -> JSON scalars; int -> JSON number if |x| < 2**53 else {"$int": digits}
    float nan/inf -> {"$float": "nan"|"inf"|"-inf"}; tuple -> {"$tuple": [...]}
    dict -> {"$dict": [[k, v], ...]}; set/frozenset -> {"$set"|"$frozenset": [...]}
    bytes -> {"$bytes": base64}; complex -> {"$complex": [re, im]}; list -> JSON array
"""

from __future__ import annotations

import base64
import math
import sys
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


class _Budget:
    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValueError(f"value has more than {MAX_NODES} elements")


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


def encode(value: Any, depth: int = 0, budget: _Budget | None = None) -> Any:
    """Encode plain data; see the module docstring. Raises ValueError past the depth/size limits."""
    budget = budget or _Budget()
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
            return {"$unsupported": f"int of more than {MAX_INT_DIGITS} digits"}
        return {"$int": _int_digits(value)}
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if kind is list:
        return [encode(item, depth + 1, budget) for item in value]
    if kind is tuple:
        return {"$tuple": [encode(item, depth + 1, budget) for item in value]}
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
    if converted:
        return encode(plain, depth + 1, budget)
    return {"$unsupported": _type_name(kind)}


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


def decode(data: Any, depth: int = 0, budget: _Budget | None = None) -> Any:
    """Inverse of encode, strict: raises ValueError on anything encode cannot produce."""
    budget = budget or _Budget()
    budget.spend()
    if depth > MAX_DEPTH + 2:
        raise ValueError("value nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, str, float):
        return data
    if kind is int:
        return data
    if kind is list:
        return [decode(item, depth + 1, budget) for item in data]
    if kind is not dict or len(data) != 1:
        raise ValueError(f"not a tagged value: {str(data)[:80]}")
    ((tag, payload),) = data.items()
    return _decode_tagged(tag, payload, depth, budget)


def _decode_tagged(tag: str, payload: Any, depth: int, budget: _Budget) -> Any:
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
    if type(payload) is not list:
        raise ValueError(f"bad payload for {tag}")
    if tag == "$dict":
        if any(type(pair) is not list or len(pair) != 2 for pair in payload):
            raise ValueError("bad $dict entry")
        try:
            return {decode(k, depth + 1, budget): decode(v, depth + 1, budget) for k, v in payload}
        except TypeError as exc:  # an unhashable key
            raise ValueError(f"bad $dict key: {exc}") from None
    items = [decode(item, depth + 1, budget) for item in payload]
    if tag == "$tuple":
        return tuple(items)
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
