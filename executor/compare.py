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
   - two integer tokens (``[+-]?[0-9]+``) are equal iff numerically equal, decided on the digit strings
     (sign and leading zeros removed, ``-0`` is ``0``), so any length works;
   - otherwise, when both are numeric tokens (``[+-]?`` then digits with an optional fraction and an
     optional exponent, or ``inf``, ``infinity``, ``nan`` in any case), they are equal iff both are nan,
     or ``math.isclose(a, b, rel_tol=options.float_rel_tol, abs_tol=options.float_abs_tol)``
     (the same infinity is close; ``inf`` and ``-inf`` are not). A finite token too large for a float
     is compared with ``decimal`` under the same tolerances;
   - anything else is not equal.

   There is never prefix matching, set or multiset matching, or case folding unless the option asks.

Call-based return values, ``compare_value(actual, expected, options)``: both sides are plain decoded
data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset; exact types, any
other type, subclasses included, is never equal). Deep, structural: list and tuple are both sequences
and compare element-wise (a tuple equals a list); bool equals only bool (``True != 1``); int vs int is
exact; int or float vs float uses the tolerance rule above (nan equals nan); complex only equals complex
(real and imaginary parts by the float rule); str is exact (casefolded when not case sensitive);
bytes exact; dict keys must be the same keys of the same types, then values compare by key; sets compare
with their own set equality. Nesting deeper than ``MAX_DEPTH`` is not equal. APPS rule: when the values
are not equal and ``expected`` is a one-element list, the result is that of ``actual`` against
``expected[0]`` (one unwrapping only, as APPS does).

Reasons are short (at most ``REASON_LIMIT`` characters) and never contain whole outputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only its attributes are read, so the module stays standard library at run time
    from coderl.problems.model import CompareOptions

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
    if _INT_RE.fullmatch(actual) and _INT_RE.fullmatch(expected):
        return _normal_int(actual) == _normal_int(expected)
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
        return f"<{type(x).__name__} of {len(x)} items>"
    return f"<{type(x).__name__}>"


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
        return f"unsupported type {type(a if ka is None else e).__name__}"
    if {ka, ke} <= {"int", "float"} and "float" in (ka, ke):
        return "" if _close(a, e, options) else _MISMATCH
    if ka != ke:
        return f"expected {type(e).__name__}, got {type(a).__name__}"
    if ka in ("sequence", "dict", "set") and depth >= MAX_DEPTH:
        return f"nesting deeper than {MAX_DEPTH} levels"
    if ka == "complex":
        ok = _close(a.real, e.real, options) and _close(a.imag, e.imag, options)
        return "" if ok else _MISMATCH
    if ka == "str" and not options.case_sensitive:
        return "" if a.casefold() == e.casefold() else _MISMATCH
    if ka in ("None", "bool", "int", "str", "bytes"):
        return "" if a == e else _MISMATCH
    if ka == "set":
        try:
            return "" if a == e else f"sets differ (expected {_count(len(e), 'item')}, got {len(a)})"
        except RecursionError:
            return "set elements nested too deeply"
    if ka == "sequence":
        if len(a) != len(e):
            return f"expected {_count(len(e), 'item')}, got {len(a)}"
        stack.extend((a[i], e[i], depth + 1, (path, i)) for i in reversed(range(len(e))))
        return ""
    # dict: the same keys, each of the same type, then values by key
    try:
        a_keys, e_keys = {(type(k), k) for k in a}, {(type(k), k) for k in e}
        if a_keys != e_keys:
            missing = [k for t, k in e_keys - a_keys][:1]
            extra = [k for t, k in a_keys - e_keys][:1]
            detail = (
                f"missing key {_show_value(missing[0])}" if missing else f"extra key {_show_value(extra[0])}"
            )
            return f"dict keys differ: {detail}"
    except RecursionError:
        return "dict keys nested too deeply"
    stack.extend((a[k], e[k], depth + 1, (path, k)) for k in reversed(list(e)))
    return ""


def compare_value(actual: Any, expected: Any, options: CompareOptions) -> Comparison:
    """Compare a call's decoded return value with the expected value (rules in the module docstring)."""
    result = _compare_tree(actual, expected, options)
    if not result.equal and type(expected) is list and len(expected) == 1:
        return _compare_tree(actual, expected[0], options)
    return result
