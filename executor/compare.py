"""The one place where a program's output is compared with the expected output.

Policies learn to exploit lenient comparators, so these rules are exact (standard library only).

Standard output, ``compare_stdout(actual, expected, options)``:

1. Both texts are normalised: ``\\r\\n`` and ``\\r`` become ``\\n``; trailing spaces, tabs, vertical
   tabs and form feeds are stripped from every line; empty lines at the end are dropped. Leading
   whitespace and blank lines in the middle are kept. Identical normalised texts are equal.
2. Otherwise the comparison is token-wise: the line counts must be equal; each line is split on runs
   of ASCII space, tab, vertical tab and form feed (other characters, U+00A0 included, belong to
   tokens); the token counts per line must be equal; tokens are compared pairwise, in order:

   - identical strings are equal; when ``options.case_sensitive`` is False, so are strings whose
     ``casefold()`` is identical;
   - an integer token (``[+-]?[0-9]+``) expected: equal iff the actual token is an integer token of
     the same value, decided on the digit strings (sign and leading zeros removed, ``-0`` is ``0``),
     so any length works; a float-looking token (``1e9``, ``1000000000.0``) never equals an integer;
   - a float token expected (``[+-]?`` then digits with an optional fraction and an optional
     exponent, or ``inf``, ``infinity``, ``nan`` in any case, and not an integer token): equal iff the
     actual token is numeric too and both are nan, or ``math.isclose(a, b,
     rel_tol=options.float_rel_tol, abs_tol=options.float_abs_tol)`` (the same infinity is close;
     ``inf`` and ``-inf`` are not). A finite token too large for a float is compared with ``decimal``
     under the same tolerances. The tolerance exists only where the expected output has a float;
   - anything else is not equal.

   There is never prefix matching, set or multiset matching, or case folding unless the option asks.

Call-based return values, ``compare_value(actual, expected, options)``: ``actual`` is what
``executor.plain.decode_untrusted`` made of the program's answer (sets and dicts as ``SetValue`` and
``DictValue``, never hashed); ``expected`` is the problem's value (real Python data). Types: None,
bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset; any other type is never
equal. Deep, structural: list and tuple are both sequences and compare element-wise (a tuple equals
a list); bool equals only bool (``True != 1``); an int expected is equal only to the same int, or to
a float of exactly that value (``2.0`` for ``2``, as Python's ``==`` says; ``float(10**18)`` is not
``10**18 + 1``), never within a tolerance; a float expected takes an int or float under the
tolerance rule above (nan equals nan); complex only equals complex (real and imaginary parts by the
float rule); str is exact (casefolded when not case sensitive); bytes exact. Set members and dict
keys are compared by ``plain.canonical_key``: exact, types included (``1``, ``1.0`` and ``True`` are
different keys), never casefolded; sets are equal iff they have the same members, dicts iff they
have the same keys and equal values key by key. Nesting deeper than ``MAX_DEPTH`` is not equal.
APPS rule: when the values are not equal and ``expected`` is a one-element list, the result is that
of ``actual`` against ``expected[0]`` (one unwrapping only, as APPS does).

Where ``options.case_sensitive`` comes from: it is True unless the problem says otherwise, either
explicitly (the native format's ``compare.case_sensitive`` field) or, for APPS, in a sentence of the
statement about the *output* (``problems.apps.statement_says_case_insensitive``): wording
such as "You can print each letter in any case" or "... will be recognized as a positive answer".
A sentence about the input ("the input letters may be in any case") never switches it off.

Cost: linear in the size of both texts for standard output; for values, linear plus sorting the
members of each set and the keys of each dict (no program-chosen value is ever hashed).

Reasons are short (at most ``REASON_LIMIT`` characters) and never contain whole outputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from . import plain
from .plain import DictValue, SetValue

if TYPE_CHECKING:  # only its attributes are read, so the module stays standard library at run time
    from coderl.problem import CompareOptions

__all__ = ["MAX_DEPTH", "Comparison", "compare_stdout", "compare_value", "truncate_for_message"]

MAX_DEPTH = 1000
REASON_LIMIT = 200
_TOKEN_LIMIT = 40

_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUM_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)",
    re.ASCII | re.IGNORECASE,
)
_INF_RE = re.compile(r"[+-]?inf(?:inity)?", re.ASCII | re.IGNORECASE)
_TOKEN_RE = re.compile(r"[^ \t\v\f]+")
_TRAILING_WS = " \t\v\f"
_DECIMAL_CONTEXT = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict of one comparison; ``reason`` is empty when equal."""

    equal: bool
    reason: str = ""


EQUAL = Comparison(True)


def _differ(reason: str) -> Comparison:
    return Comparison(False, truncate_for_message(reason, REASON_LIMIT))


def truncate_for_message(text: str, limit: int = 200) -> str:
    """``text`` cut to at most ``limit`` characters, marked with its full length when cut."""
    limit = max(limit, 0)
    if len(text) <= limit:
        return text
    suffix = f"...[{len(text)} chars]"
    if limit <= len(suffix):
        return text[:limit]
    return text[: limit - len(suffix)] + suffix


# ---- numbers ---------------------------------------------------------------------------------------


def _as_float(x: int | float | str) -> float | None:
    """``x`` as a float, or None when a finite value overflows the float range."""
    if isinstance(x, str):
        f = float(x)
        return None if math.isinf(f) and not _INF_RE.fullmatch(x) else f
    try:
        return float(x)
    except OverflowError:
        return None


def _close(x: int | float | str, y: int | float | str, options: CompareOptions) -> bool:
    """The tolerance rule; ``x`` and ``y`` are numbers or tokens matching ``_NUM_RE``."""
    fx, fy = _as_float(x), _as_float(y)
    if fx is not None and fy is not None:
        if math.isnan(fx) or math.isnan(fy):
            return math.isnan(fx) and math.isnan(fy)
        return math.isclose(fx, fy, rel_tol=options.float_rel_tol, abs_tol=options.float_abs_tol)
    try:  # a finite value beyond the float range: exact decimals, same tolerances
        dx, dy = Decimal(x), Decimal(y)
        if dx.is_nan() or dy.is_nan():
            return dx.is_nan() and dy.is_nan()
        if dx.is_infinite() or dy.is_infinite():
            return dx == dy
        with localcontext(_DECIMAL_CONTEXT):
            tolerance = max(
                Decimal(options.float_rel_tol) * max(abs(dx), abs(dy)), Decimal(options.float_abs_tol)
            )
            return abs(dx - dy) <= tolerance
    except ArithmeticError:  # an exponent even decimal cannot hold
        return False


def _normal_int(token: str) -> str:
    digits = token.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if token[0] == "-" and digits != "0" else digits


# ---- standard output -------------------------------------------------------------------------------


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip(_TRAILING_WS) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tokens_equal(actual: str, expected: str, options: CompareOptions) -> bool:
    if actual == expected:
        return True
    if not options.case_sensitive and actual.casefold() == expected.casefold():
        return True
    if _INT_RE.fullmatch(expected):
        return _INT_RE.fullmatch(actual) is not None and _normal_int(actual) == _normal_int(expected)
    if _NUM_RE.fullmatch(actual) and _NUM_RE.fullmatch(expected):
        return _close(actual, expected, options)
    return False


def _show_token(token: str) -> str:
    return repr(truncate_for_message(token, _TOKEN_LIMIT))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def compare_stdout(actual: str, expected: str, options: CompareOptions) -> Comparison:
    """Compare a program's standard output with the expected output (rules in the module docstring)."""
    actual_lines, expected_lines = _normalise(actual), _normalise(expected)
    if actual_lines == expected_lines:
        return EQUAL
    if len(actual_lines) != len(expected_lines):
        return _differ(f"expected {_count(len(expected_lines), 'line')}, got {len(actual_lines)}")
    for number, (a_line, e_line) in enumerate(zip(actual_lines, expected_lines, strict=True), start=1):
        if a_line == e_line:
            continue
        a_tokens, e_tokens = _TOKEN_RE.findall(a_line), _TOKEN_RE.findall(e_line)
        if len(a_tokens) != len(e_tokens):
            return _differ(f"line {number}: expected {_count(len(e_tokens), 'token')}, got {len(a_tokens)}")
        for index, (a, e) in enumerate(zip(a_tokens, e_tokens, strict=True), start=1):
            if not _tokens_equal(a, e, options):
                return _differ(
                    f"line {number}, token {index}: expected {_show_token(e)}, got {_show_token(a)}"
                )
    return EQUAL


# ---- call-based values -----------------------------------------------------------------------------

_KINDS: dict[type, str] = {t: t.__name__ for t in (bool, int, float, complex, str, bytes, dict, set)}
_KINDS |= {type(None): "None", bytearray: "bytes", frozenset: "set", list: "sequence", tuple: "sequence"}
_KINDS |= {SetValue: "set", DictValue: "dict"}

_Path = tuple["_Path", Any] | None
_MISMATCH = "mismatch"


def _show_value(x: Any, limit: int = _TOKEN_LIMIT) -> str:
    kind = _KINDS.get(type(x))
    if kind in ("str", "bytes"):
        return repr(x[:limit]) + ("..." if len(x) > limit else "")
    if kind == "int" and x.bit_length() > 256:
        return f"<int of {x.bit_length()} bits>"
    if kind in ("None", "bool", "int", "float", "complex"):
        return truncate_for_message(repr(x), limit)
    if kind is not None:
        return f"<{plain.type_label(x)} of {len(x)} items>"
    return f"<{plain.type_label(x)}>"


def _show_path(path: _Path) -> str:
    steps: list[str] = []
    while path is not None:
        path, key = path
        steps.append(f"[{_show_value(key, 20)}]")
    return truncate_for_message("".join(reversed(steps)), 80)


def _compare_tree(actual: Any, expected: Any, options: CompareOptions) -> Comparison:
    stack: list[tuple[Any, Any, int, _Path]] = [(actual, expected, 0, None)]
    while stack:
        a, e, depth, path = stack.pop()
        problem = _node_problem(a, e, depth, path, stack, options)
        if problem == _MISMATCH:
            problem = f"expected {_show_value(e)}, got {_show_value(a)}"
        if problem:
            where = f"at {_show_path(path)}: " if path is not None else ""
            return _differ(where + problem)
    return EQUAL


def _node_problem(a: Any, e: Any, depth: int, path: _Path, stack: list[Any], options: CompareOptions) -> str:
    """Why ``a`` differs from ``e`` at this node ("" if it may not), pushing children onto ``stack``."""
    ka, ke = _KINDS.get(type(a)), _KINDS.get(type(e))
    if ka is None or ke is None:
        return f"unsupported type {plain.type_label(a if ka is None else e)}"
    if ke == "int" and ka == "float":
        return "" if a == e else _MISMATCH  # exact: an integer answer has no tolerance
    if ke == "float" and ka in ("int", "float"):
        return "" if _close(a, e, options) else _MISMATCH
    if ka != ke:
        return f"expected {plain.type_label(e)}, got {plain.type_label(a)}"
    if ka in ("sequence", "dict", "set") and depth >= MAX_DEPTH:
        return f"nesting deeper than {MAX_DEPTH} levels"
    if ka == "complex":
        ok = _close(a.real, e.real, options) and _close(a.imag, e.imag, options)
        return "" if ok else _MISMATCH
    if ka == "str" and not options.case_sensitive:
        return "" if a.casefold() == e.casefold() else _MISMATCH
    if ka in ("None", "bool", "int", "str", "bytes"):
        return "" if a == e else _MISMATCH
    if ka == "sequence":
        if len(a) != len(e):
            return f"expected {_count(len(e), 'item')}, got {len(a)}"
        stack.extend((a[i], e[i], depth + 1, (path, i)) for i in reversed(range(len(e))))
        return ""
    try:
        if ka == "set":
            a_keys, e_keys = plain.unique_sorted_keys(a, depth), plain.unique_sorted_keys(e, depth)
            return (
                ""
                if a_keys == e_keys
                else f"sets differ (expected {_count(len(e_keys), 'item')}, got {len(a_keys)})"
            )
        return _dict_problem(a, e, depth, path, stack)
    except plain.Unhashable as exc:
        return str(exc)


def _keyed(value: Any, depth: int) -> list[tuple[tuple[Any, ...], Any, Any]]:
    """(canonical key, key, value) of a dict's entries, sorted by canonical key."""
    entries = [(plain.canonical_key(k, depth), k, v) for k, v in plain.pairs(value)]
    entries.sort(key=itemgetter(0))
    return entries


def _dict_problem(a: Any, e: Any, depth: int, path: _Path, stack: list[Any]) -> str:
    """The same keys, compared exactly and with their types, then the values key by key."""
    a_entries, e_entries = _keyed(a, depth), _keyed(e, depth)
    for i in range(1, len(a_entries)):  # only a forged payload repeats a key
        if a_entries[i][0] == a_entries[i - 1][0]:
            return f"repeated key {_show_value(a_entries[i][1])}"
    for i in range(max(len(a_entries), len(e_entries))):
        if i >= len(e_entries) or (i < len(a_entries) and a_entries[i][0] < e_entries[i][0]):
            return f"dict keys differ: extra key {_show_value(a_entries[i][1])}"
        if i >= len(a_entries) or a_entries[i][0] != e_entries[i][0]:
            return f"dict keys differ: missing key {_show_value(e_entries[i][1])}"
    stack.extend(
        (a_entry[2], e_entry[2], depth + 1, (path, e_entry[1]))
        for a_entry, e_entry in reversed(list(zip(a_entries, e_entries, strict=True)))
    )
    return ""


def compare_value(actual: Any, expected: Any, options: CompareOptions) -> Comparison:
    """Compare a call's decoded return value with the expected value (rules in the module docstring)."""
    result = _compare_tree(actual, expected, options)
    if not result.equal and type(expected) is list and len(expected) == 1:
        return _compare_tree(actual, expected[0], options)
    return result
