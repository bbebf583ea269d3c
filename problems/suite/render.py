"""A pipeline as a ``Problem``: statement, canonical program, starter code and tests.

Two I/O styles, one canonical program form each (deterministic, so supervised training sees one
target per statement)::

    stdio: Read an integer n from standard input. Add 3 to it, then multiply it by 2. Print the result.
           n = int(input())\\nn = n + 3\\nn = n * 2\\nprint(n)\\n
    call:  Write a function f(n) that takes an integer n. Add 3 to it, then multiply it by 2.
           Return the result.
           def f(n):\\n    n = n + 3\\n    n = n * 2\\n    return n\\n   (starter code: def f(n):\\n)

List inputs read ``a`` (``a = list(map(int, input().split()))`` or ``def f(a):``) and start with a
reducer line (``n = sum(a)``). Expected outputs are computed by evaluating the pipeline in Python,
never by running the program text. ``metadata["pipeline"]`` holds the specs (``["sum", "add 3"]``)
and ``metadata["style"]`` the style, from which ``canonical_program`` rebuilds the program of any
suite problem, also one whose solutions are withheld.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from problems import Problem, TestCase, TestKind

from .ops import Pipeline

__all__ = ["FN_NAME", "Style", "canonical_program", "draw_inputs", "make_problem", "program", "statement"]

Style = Literal["stdio", "call"]
FN_NAME = "f"
"""the function every call-based problem defines"""
SOURCE = "suite"
INT_RANGE = 20
"""integer inputs lie in [-INT_RANGE, INT_RANGE]"""
LIST_VALUES = 9
"""list elements lie in [-LIST_VALUES, LIST_VALUES]; lists hold 1 to LIST_LENGTH of them"""
LIST_LENGTH = 5
INPUT_DRAWS = 20
"""tries at drawing test inputs that tell the pipeline from every shorter one"""

_READ = {"int": "n = int(input())", "list": "a = list(map(int, input().split()))"}
_ARG = {"int": "n", "list": "a"}
_GIVEN = {
    ("stdio", "int"): "Read an integer n from standard input.",
    ("stdio", "list"): "Read a line of space-separated integers from standard input.",
    ("call", "int"): f"Write a function {FN_NAME}(n) that takes an integer n.",
    ("call", "list"): f"Write a function {FN_NAME}(a) that takes a non-empty list of integers a.",
}
_RESULT = {"stdio": "Print the result.", "call": "Return the result."}


def statement(pipeline: Pipeline, style: Style) -> str:
    """The natural-language problem; every operation's phrase and constant appear in it, in order."""
    phrases = ", then ".join(op.phrase() for op in pipeline.steps)
    return f"{_GIVEN[style, pipeline.input_kind]} {phrases[0].upper()}{phrases[1:]}. {_RESULT[style]}"


def starter_code(pipeline: Pipeline, style: Style) -> str:
    return f"def {FN_NAME}({_ARG[pipeline.input_kind]}):\n" if style == "call" else ""


def program(pipeline: Pipeline, style: Style) -> str:
    """The canonical program: one line per operation."""
    body = [op.code() for op in pipeline.steps]
    if style == "stdio":
        return "\n".join([_READ[pipeline.input_kind], *body, "print(n)"]) + "\n"
    lines = [*body, "return n"]
    return starter_code(pipeline, style) + "".join(f"    {line}\n" for line in lines)


def canonical_program(problem: Problem) -> str:
    """The canonical program of a suite problem, rebuilt from its metadata."""
    try:
        pipeline = Pipeline.from_specs(problem.metadata["pipeline"])
        style = problem.metadata["style"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{problem.task_id} is not a suite problem: {exc}") from None
    if style not in ("stdio", "call"):
        raise ValueError(f"{problem.task_id}: unknown style {style!r}")
    return program(pipeline, style)


def _draw_once(rng: random.Random, kind: str, count: int) -> list[Any]:
    if kind == "int":  # zero, then negatives and positives in turn, all distinct
        negatives = rng.sample(range(-INT_RANGE, 0), count // 2)
        positives = rng.sample(range(1, INT_RANGE + 1), (count - 1) // 2)
        values: list[Any] = [0, *negatives, *positives][:count]
    else:  # lists; at least one with a negative element
        values = []
        while len(values) < count:
            lst = [rng.randint(-LIST_VALUES, LIST_VALUES) for _ in range(rng.randint(1, LIST_LENGTH))]
            if not values and min(lst) >= 0:
                lst[0] = -rng.randint(1, LIST_VALUES)
            if lst not in values:
                values.append(lst)
    rng.shuffle(values)
    return values


def draw_inputs(rng: random.Random, pipeline: Pipeline, count: int, examples: int = 0) -> list[Any] | None:
    """``count`` distinct test inputs (integers include 0 and negatives) whose last
    ``count - examples`` (the hidden tests') tell ``pipeline`` from every shorter pipeline, or None
    when ``INPUT_DRAWS`` tries find none."""
    for _ in range(INPUT_DRAWS):
        values = _draw_once(rng, pipeline.input_kind, count)
        if pipeline.distinguished_by(values[examples:]):
            return values
    return None


def _test(pipeline: Pipeline, style: Style, value: Any) -> TestCase:
    result = pipeline.evaluate(value)
    if style == "call":
        return TestCase(kind=TestKind.CALL, args=[value], expected=result)
    stdin = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return TestCase(kind=TestKind.STDIO, stdin=stdin + "\n", stdout=f"{result}\n")


def make_problem(
    task_id: str,
    pipeline: Pipeline,
    style: Style,
    inputs: list[Any],
    examples: int,
    metadata: dict[str, Any],
    with_solution: bool = True,
) -> Problem:
    """The problem; the first ``examples`` inputs give the example tests, the rest the hidden ones."""
    tests = [_test(pipeline, style, value) for value in inputs]
    return Problem(
        task_id=task_id,
        source=SOURCE,
        statement=statement(pipeline, style),
        starter_code=starter_code(pipeline, style),
        fn_name=FN_NAME if style == "call" else None,
        example_tests=tests[:examples],
        hidden_tests=tests[examples:],
        solutions=[program(pipeline, style)] if with_solution else [],
        difficulty=pipeline.level,
        metadata={
            "pipeline": pipeline.specs,
            "style": style,
            "input": pipeline.input_kind,
            **metadata,
        },
    )
