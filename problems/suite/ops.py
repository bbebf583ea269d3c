"""The suite's vocabulary: primitive operations and the pipelines composed from them.

A *primitive* is one operation with its constant, written as a *spec*: ``"add 3"``, ``"mod 4"``,
``"square"``. Each has one statement phrase (``"add 3 to it"``) and one line of code
(``"n = n + 3"``), so a statement determines its program token for token. Integer primitives map
an integer to an integer; the four *reducers* (``sum``, ``largest``, ``smallest``, ``count``) turn
a non-empty list of integers into one.

A *pipeline* is an optional reducer (present exactly when the input is a list) followed by 1-3
integer operations; its level is the number of integer operations. Pipelines are kept meaningful,
so that the tests can tell the intended program from a shorter one:

- no two consecutive operations of one family (``add 2, add 3``; ``add 5, subtract 1``);
- on a fixed probe set, the pipeline's results are not all equal, and differ from those of every
  pipeline obtained by dropping one or more of its integer operations (this rejects no-ops such as
  ``abs`` after ``square``, cancellations such as ``multiply by 2, divide by 2``, and ``negate``
  before ``abs``).

Values are Python integers: ``//`` and ``%`` round down, so the statements say "rounding down"
and give the remainder's range (``k`` is never 0, so there is no division by zero).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "INT_PRIMITIVES",
    "LEVEL_OPS",
    "PRIMITIVES",
    "REDUCERS",
    "Level",
    "Op",
    "Pipeline",
    "Primitive",
    "all_ops",
    "random_pipeline",
]

Level = Literal["easy", "medium", "hard"]
LEVEL_OPS: dict[str, int] = {"easy": 1, "medium": 2, "hard": 3}
"""integer operations per pipeline, by level"""


@dataclass(frozen=True)
class Primitive:
    name: str
    constants: tuple[int, ...]
    """the values of k; empty for an operation without a constant"""
    phrase: str
    """statement phrase; ``{k}`` is the constant, ``{k1}`` is k - 1"""
    code: str
    """one line of the canonical program; ``{k}`` is the constant"""
    fn: Callable[[Any, int], int]
    family: str = ""
    """consecutive operations of one family are not composed (default: the name)"""
    reducer: bool = False
    """takes the list of integers (``a``) rather than the integer ``n``"""


def _primitive(name: str, constants: Sequence[int], phrase: str, code: str, fn: Callable[[Any, int], int],
               family: str = "", reducer: bool = False) -> Primitive:  # fmt: skip
    return Primitive(name, tuple(constants), phrase, code, fn, family or name, reducer)


INT_PRIMITIVES: tuple[Primitive, ...] = (
    _primitive("add", range(1, 10), "add {k} to it", "n = n + {k}", lambda n, k: n + k, "shift"),
    _primitive("sub", range(1, 10), "subtract {k} from it", "n = n - {k}", lambda n, k: n - k, "shift"),
    _primitive("mul", range(2, 10), "multiply it by {k}", "n = n * {k}", lambda n, k: n * k),
    _primitive("div", range(2, 10), "divide it by {k}, rounding down", "n = n // {k}", lambda n, k: n // k),
    _primitive(
        "mod", range(2, 10), "take it modulo {k} (a result from 0 to {k1})", "n = n % {k}", lambda n, k: n % k
    ),
    _primitive("max", range(-5, 6), "take the larger of it and {k}", "n = max(n, {k})", max),
    _primitive("min", range(-5, 6), "take the smaller of it and {k}", "n = min(n, {k})", min),
    _primitive("square", (), "square it", "n = n * n", lambda n, _: n * n),
    _primitive("neg", (), "negate it", "n = -n", lambda n, _: -n),
    _primitive("abs", (), "take its absolute value", "n = abs(n)", lambda n, _: abs(n)),
)
REDUCERS: tuple[Primitive, ...] = (
    _primitive("sum", (), "take their sum", "n = sum(a)", lambda a, _: sum(a), reducer=True),
    _primitive("largest", (), "take the largest of them", "n = max(a)", lambda a, _: max(a), reducer=True),
    _primitive("smallest", (), "take the smallest of them", "n = min(a)", lambda a, _: min(a), reducer=True),
    _primitive("count", (), "count them", "n = len(a)", lambda a, _: len(a), reducer=True),
)
PRIMITIVES: dict[str, Primitive] = {p.name: p for p in INT_PRIMITIVES + REDUCERS}


@dataclass(frozen=True, order=True)
class Op:
    """One primitive with its constant (``k`` is None exactly when the primitive has none)."""

    name: str
    k: int | None = None

    def __post_init__(self) -> None:
        primitive = PRIMITIVES.get(self.name)
        if primitive is None:
            raise ValueError(f"unknown operation {self.name!r}; known: {', '.join(PRIMITIVES)}")
        if (self.k is None) != (not primitive.constants) or (
            self.k is not None and self.k not in primitive.constants
        ):
            allowed = ", ".join(map(str, primitive.constants)) or "none"
            raise ValueError(f"operation {self.name!r}: constant {self.k!r} not allowed (allowed: {allowed})")

    @property
    def primitive(self) -> Primitive:
        return PRIMITIVES[self.name]

    @property
    def spec(self) -> str:
        """``"add 3"``, ``"square"``: the primitive's name and constant, as stored in metadata."""
        return self.name if self.k is None else f"{self.name} {self.k}"

    @classmethod
    def parse(cls, spec: str) -> Op:
        name, _, k = spec.partition(" ")
        try:
            return cls(name, int(k) if k else None)
        except ValueError as exc:
            raise ValueError(f"bad operation spec {spec!r}: {exc}") from None

    def phrase(self) -> str:
        k = self.k if self.k is not None else 0
        return self.primitive.phrase.format(k=k, k1=k - 1)

    def code(self) -> str:
        return self.primitive.code.format(k=self.k)

    def apply(self, value: Any) -> int:
        return self.primitive.fn(value, self.k if self.k is not None else 0)


def all_ops(primitives: Sequence[Primitive] = INT_PRIMITIVES) -> list[Op]:
    """Every (primitive, constant) of ``primitives``."""
    return [Op(p.name, k) for p in primitives for k in (p.constants or (None,))]


@dataclass(frozen=True)
class Pipeline:
    """An optional reducer (list input) followed by integer operations."""

    ops: tuple[Op, ...]
    reducer: Op | None = None

    @property
    def input_kind(self) -> Literal["int", "list"]:
        return "int" if self.reducer is None else "list"

    @property
    def level(self) -> str:
        return next(name for name, count in LEVEL_OPS.items() if count == len(self.ops))

    @property
    def steps(self) -> tuple[Op, ...]:
        """Every operation in order, the reducer first."""
        return self.ops if self.reducer is None else (self.reducer, *self.ops)

    @property
    def specs(self) -> list[str]:
        return [op.spec for op in self.steps]

    @classmethod
    def from_specs(cls, specs: Sequence[str]) -> Pipeline:
        ops = [Op.parse(spec) for spec in specs]
        reducer = ops.pop(0) if ops and ops[0].primitive.reducer else None
        if any(op.primitive.reducer for op in ops):
            raise ValueError(f"pipeline {list(specs)}: a reducer may only come first")
        return cls(tuple(ops), reducer)

    def evaluate(self, value: Any) -> int:
        for op in self.steps:
            value = op.apply(value)
        return value

    def chained(self) -> bool:
        """No two consecutive integer operations of one family."""
        families = [op.primitive.family for op in self.ops]
        return all(a != b for a, b in itertools.pairwise(families))

    def shorter(self) -> list[Pipeline]:
        """The pipelines with one or more integer operations dropped (the reducer is kept)."""
        indices = range(len(self.ops))
        return [
            Pipeline(tuple(self.ops[i] for i in kept), self.reducer)
            for size in range(len(self.ops))
            for kept in itertools.combinations(indices, size)
        ]

    def distinguished_by(self, inputs: Sequence[Any]) -> bool:
        """Results on ``inputs`` are not all equal and differ from every shorter pipeline's."""
        results = [self.evaluate(value) for value in inputs]
        if len(set(results)) < 2:
            return False
        return all(results != [other.evaluate(value) for value in inputs] for other in self.shorter())

    def meaningful(self) -> bool:
        """Chained, and distinguished by the fixed probe inputs of its input kind."""
        probes = _INT_PROBES if self.reducer is None else _LIST_PROBES
        return self.chained() and self.distinguished_by(probes)


_INT_PROBES: tuple[int, ...] = tuple(range(-30, 31))
_probe_rng = random.Random("coderl-suite-probes")  # fixed: the probes never depend on the seed
_LIST_PROBES: tuple[tuple[int, ...], ...] = tuple(
    tuple(_probe_rng.randint(-12, 12) for _ in range(_probe_rng.randint(1, 6))) for _ in range(60)
)


def random_op(rng: random.Random, primitives: Sequence[Primitive] = INT_PRIMITIVES) -> Op:
    """A primitive drawn uniformly, then its constant drawn uniformly."""
    primitive = rng.choice(list(primitives))
    return Op(primitive.name, rng.choice(primitive.constants) if primitive.constants else None)


def random_pipeline(
    rng: random.Random, level: str, list_input: bool, allowed: frozenset[str] | None = None
) -> Pipeline | None:
    """A meaningful pipeline of ``level``, or None when the draw is not one (the caller redraws).

    ``allowed``: when given, only primitives whose spec is in it are used."""
    if allowed is None:
        reducer = random_op(rng, REDUCERS) if list_input else None
        ops = tuple(random_op(rng) for _ in range(LEVEL_OPS[level]))
    else:
        reducers = sorted(op for op in map(Op.parse, allowed) if op.primitive.reducer)
        ints = sorted(op for op in map(Op.parse, allowed) if not op.primitive.reducer)
        if not ints or (list_input and not reducers):
            return None
        reducer = rng.choice(reducers) if list_input else None
        ops = tuple(rng.choice(ints) for _ in range(LEVEL_OPS[level]))
    pipeline = Pipeline(ops, reducer)
    return pipeline if pipeline.meaningful() else None
