"""MBPP loader: the original JSONL (``text``, ``test_setup_code``, ``challenge_test_list``) and
the sanitized variant (``prompt``, ``test_imports``; JSONL or a JSON list).

Every assert string becomes an ``assert`` test. The example tests are ``test_list``; the hidden
tests are ``test_list`` followed by ``challenge_test_list``.

The prompt is the zero-shot setting CodeRL evaluates on MBPP (and MBPP's own paper uses): the
statement is the description followed by the example asserts, and the starter code is the
signature of the function they call, taken from the reference program. Without them a model
cannot know the name the tests call, and no program could pass.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path
from typing import Any

from coderl.problem import Problem, ProblemFormatError, TestCase, TestKind
from problems.native import iter_json_records, json_type, record_field, string_list

_BUILTIN_NAMES = frozenset(dir(builtins))


def _defined_names(code: str) -> set[str]:
    """Top-level function and class names of ``code`` (empty when it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def called_function(assert_line: str, defined: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The function an MBPP assert tests: the first plain-name call (in source order) to a name in
    ``defined``, else the first call to a name that is not a builtin, else None.

    ``assert set(similar_elements(a, b)) == set(c)`` gives ``similar_elements``.
    """
    try:
        tree = ast.parse(assert_line.strip())
    except (SyntaxError, ValueError):
        return None
    calls = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    names = [node.func.id for node in calls if isinstance(node.func, ast.Name)]
    for name in names:
        if name in defined:
            return name
    for name in names:
        if name not in _BUILTIN_NAMES:
            return name
    return None


def signature(code: str, fn_name: str) -> str:
    """``def name(params):`` of ``fn_name`` in ``code`` (empty when it is not defined there)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == fn_name:
            return f"def {fn_name}({ast.unparse(node.args)}):"
    return ""


def zero_shot_statement(text: str, test_list: list[str]) -> str:
    """The description, then the example asserts as MBPP's prompt shows them."""
    if not test_list:
        return text
    return text.rstrip() + "\nYour code should pass these tests:\n" + "\n".join(test_list)


def _task_id(record: dict[str, Any], path: Path, where: str) -> str:
    value = record.get("task_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    reason = "missing required field" if value is None else f"expected an integer, got {json_type(value)}"
    raise ProblemFormatError(str(path), None, "task_id", f"{where}: {reason}")


def mbpp_problem(record: dict[str, Any], path: str | Path = "<mbpp>", where: str = "") -> Problem:
    """One MBPP record (original or sanitized) as a ``Problem``."""
    file = Path(path)
    task_id = _task_id(record, file, where)
    ctx: dict[str, Any] = {"path": file, "problem": task_id, "where": where}
    if record.get("text") is not None:
        statement = record_field(record, "text", str, **ctx)
    elif record.get("prompt") is not None:
        statement = record_field(record, "prompt", str, **ctx)
    else:
        raise ProblemFormatError(str(file), task_id, "text", f"{where}: missing required field (or 'prompt')")
    code = record_field(record, "code", str, **ctx)
    test_list = string_list(record_field(record, "test_list", list, **ctx), "test_list", **ctx)
    challenge = string_list(
        record_field(record, "challenge_test_list", list, default=[], **ctx), "challenge_test_list", **ctx
    )
    imports = string_list(
        record_field(record, "test_imports", list, default=[], **ctx), "test_imports", **ctx
    )
    setup = record_field(record, "test_setup_code", str, default="", **ctx)
    setup_code = "".join(line.rstrip("\n") + "\n" for line in imports) + setup

    fn_name = called_function(test_list[0], _defined_names(code)) if test_list else None
    examples = [TestCase(kind=TestKind.ASSERT, code=line) for line in test_list]
    metadata = {"source_file": record["source_file"]} if isinstance(record.get("source_file"), str) else {}
    return Problem(
        task_id=task_id,
        source="mbpp",
        statement=zero_shot_statement(statement, test_list),
        starter_code=signature(code, fn_name) if fn_name else "",
        fn_name=fn_name,
        setup_code=setup_code,
        example_tests=examples,
        hidden_tests=examples + [TestCase(kind=TestKind.ASSERT, code=line) for line in challenge],
        solutions=[code],
        metadata=metadata,
    )


def load_mbpp(path: str | Path) -> list[Problem]:
    """Problems from an MBPP JSONL file (or a JSON list of records, as sanitized MBPP ships)."""
    return [mbpp_problem(record, path, where) for where, record in iter_json_records(path)]
