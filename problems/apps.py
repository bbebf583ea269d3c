"""APPS loader: a split folder holding one folder per problem, or a single problem folder.

A problem folder (its name is the task id, e.g. ``0000``) holds ``question.txt``,
``input_output.json`` (``{"inputs": [...], "outputs": [...], "fn_name"?: str}``; the hidden tests)
and optionally ``solutions.json``, ``metadata.json``, ``starter_code.py`` and CodeRL's
``example_input_output.json`` (the example tests, same shape, may be or hold JSON null; for
call-based problems CodeRL stores them as text, parsed by problems/apps_examples.py).

Without ``fn_name`` the tests are stdio tests; list-valued inputs and outputs are joined with
"\\n" as APPS's harness does. With ``fn_name`` they are call tests: ``args`` is the inputs entry and
``expected`` the outputs entry exactly as stored (APPS often wraps it in a one-element list; the
comparator handles that).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from coderl.problem import CompareOptions, Problem, ProblemFormatError, TestCase, TestKind
from problems.apps_examples import parameter_names, parse_call_example
from problems.native import json_type

log = logging.getLogger(__name__)

_CASE_FREE = re.compile(
    r"\b(?:letters?|characters?|answers?|strings?|words?|output|yes|no)\b[^.\n]{0,80}?"
    r"\bin (?:any|arbitrary) (?:case|register)\b"
    r"|\bcase[- ]insensitive"
    r"|\bcase (?:of (?:the )?(?:letters?|characters?|output) )?(?:does not|doesn't|do not|don't) matter\b",
    re.IGNORECASE,
)
_ABOUT_OUTPUT = re.compile(r"\b(?:print\w*|output\w*|answers?|responses?|checker|judged?)\b", re.IGNORECASE)
_ABOUT_INPUT = re.compile(r"\b(?:input\w*|given|read)\b", re.IGNORECASE)
_YES_NO_RULE = re.compile(
    r"\brecogni[sz]ed as (?:a )?(?:positive|negative) (?:answer|response)\b", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def statement_says_case_insensitive(statement: str) -> bool:
    """True when a sentence of the statement says the *output*'s letter case does not matter, as
    Codeforces' "You can print each letter in any case" or "... will be recognized as positive
    answer" do; the problem then compares case-insensitively. A sentence about the input ("the
    input letters may be in any case") or with no word about the output never counts
    (executor/compare.py documents the rule)."""
    for sentence in _SENTENCE_END.split(statement):
        if _YES_NO_RULE.search(sentence):
            return True
        if (
            _CASE_FREE.search(sentence)
            and _ABOUT_OUTPUT.search(sentence)
            and not _ABOUT_INPUT.search(sentence)
        ):
            return True
    return False


def _read_text(file: Path, task_id: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemFormatError(str(file), task_id, None, f"not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ProblemFormatError(str(file), task_id, None, f"cannot read: {exc.strerror or exc}") from exc


def _read_json(file: Path, task_id: str) -> Any:
    text = _read_text(file, task_id)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemFormatError(
            str(file), task_id, None, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def _fn_name(data: Any, file: Path, task_id: str) -> str | None:
    if not isinstance(data, dict) or data.get("fn_name") is None:
        return None
    fn_name = data["fn_name"]
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise ProblemFormatError(
            str(file), task_id, "fn_name", f"expected a function name, got {json_type(fn_name)} {fn_name!r}"
        )
    return fn_name


def _stdio_text(value: Any, file: Path, task_id: str, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    raise ProblemFormatError(
        str(file), task_id, field, f"a stdio test needs a string or a list of strings, got {json_type(value)}"
    )


def _textual_call_example(
    given: str, wanted: str, parameters: list[str] | None, where: str
) -> TestCase | None:
    """A call test from CodeRL's textual example (problems/apps_examples.py); None, logged, when the
    text is not literals (the example is dropped rather than run as garbage)."""
    try:
        args, expected = parse_call_example(given, wanted, parameters)
    except ValueError as exc:
        log.info("dropping the example test %s: %s", where, exc)
        return None
    return TestCase(kind=TestKind.CALL, args=args, expected=expected)


def _tests(
    data: Any,
    file: Path,
    task_id: str,
    fn_name: str | None,
    *,
    example: bool,
    parameters: list[str] | None = None,
) -> list[TestCase]:
    """The tests of an ``input_output.json``-shaped value (null, or null lists, allowed for examples;
    CodeRL's textual call examples parsed against the starter code's ``parameters``)."""
    if data is None and example:
        return []
    if not isinstance(data, dict):
        raise ProblemFormatError(
            str(file), task_id, None, f"expected an object with inputs and outputs, got {json_type(data)}"
        )
    lists: list[list[Any]] = []
    for name in ("inputs", "outputs"):
        value = data.get(name)
        if value is None and example:
            return []
        if value is None:
            reason = "missing required field" if name not in data else "expected a list, got null"
            raise ProblemFormatError(str(file), task_id, name, reason)
        if not isinstance(value, list):
            raise ProblemFormatError(str(file), task_id, name, f"expected a list, got {json_type(value)}")
        lists.append(value)
    inputs, outputs = lists
    if len(inputs) != len(outputs):
        raise ProblemFormatError(
            str(file), task_id, "outputs", f"{len(outputs)} outputs for {len(inputs)} inputs"
        )
    tests: list[TestCase] = []
    for index, (given, wanted) in enumerate(zip(inputs, outputs, strict=True)):
        if fn_name is None:
            stdin = _stdio_text(given, file, task_id, f"inputs[{index}]")
            stdout = _stdio_text(wanted, file, task_id, f"outputs[{index}]")
            tests.append(TestCase(kind=TestKind.STDIO, stdin=stdin, stdout=stdout))
        elif isinstance(given, list):
            tests.append(TestCase(kind=TestKind.CALL, args=given, expected=wanted))
        elif example and isinstance(given, str) and isinstance(wanted, str):
            parsed = _textual_call_example(given, wanted, parameters, f"{file} inputs[{index}]")
            if parsed is not None:
                tests.append(parsed)
        else:
            raise ProblemFormatError(
                str(file),
                task_id,
                f"inputs[{index}]",
                f"a call test ({fn_name}) needs a list of positional arguments, got {json_type(given)}",
            )
    return tests


def _solutions(folder: Path, task_id: str) -> list[str]:
    file = folder / "solutions.json"
    if not file.is_file():
        return []
    data = _read_json(file, task_id)
    if not isinstance(data, list):
        raise ProblemFormatError(
            str(file), task_id, "solutions", f"expected a list of programs, got {json_type(data)}"
        )
    for index, program in enumerate(data):
        if not isinstance(program, str):
            raise ProblemFormatError(
                str(file), task_id, f"solutions[{index}]", f"expected a string, got {json_type(program)}"
            )
    return data


def _metadata(folder: Path, task_id: str) -> tuple[str | None, dict[str, Any]]:
    file = folder / "metadata.json"
    if not file.is_file():
        return None, {}
    data = _read_json(file, task_id)
    if not isinstance(data, dict):
        raise ProblemFormatError(str(file), task_id, None, f"expected an object, got {json_type(data)}")
    difficulty = data.get("difficulty")
    if difficulty is not None and not isinstance(difficulty, str):
        raise ProblemFormatError(
            str(file), task_id, "difficulty", f"expected a string, got {json_type(difficulty)}"
        )
    return difficulty, {key: value for key, value in data.items() if key != "difficulty"}


def load_apps_problem(folder: str | Path) -> Problem:
    """One APPS problem folder as a ``Problem``; its task id is the folder's name."""
    folder = Path(folder)
    task_id = folder.name
    question = folder / "question.txt"
    if not question.is_file():
        raise ProblemFormatError(
            str(question), task_id, None, "missing: every APPS problem has a question.txt"
        )
    statement = _read_text(question, task_id)

    io_file, example_file = folder / "input_output.json", folder / "example_input_output.json"
    io_data = _read_json(io_file, task_id) if io_file.is_file() else None
    example_data = _read_json(example_file, task_id) if example_file.is_file() else None
    fn_name = _fn_name(io_data, io_file, task_id) or _fn_name(example_data, example_file, task_id)
    if io_file.is_file():
        hidden = _tests(io_data, io_file, task_id, fn_name, example=False)
    else:
        log.warning("APPS problem %s (%s) has no input_output.json: it has no hidden tests", task_id, folder)
        hidden = []
    starter = folder / "starter_code.py"
    starter_code = _read_text(starter, task_id) if starter.is_file() else ""
    parameters = parameter_names(starter_code, fn_name) if fn_name else None
    examples = _tests(example_data, example_file, task_id, fn_name, example=True, parameters=parameters)
    difficulty, metadata = _metadata(folder, task_id)
    return Problem(
        task_id=task_id,
        source="apps",
        statement=statement,
        starter_code=starter_code,
        fn_name=fn_name,
        example_tests=examples,
        hidden_tests=hidden,
        solutions=_solutions(folder, task_id),
        difficulty=difficulty,
        compare=CompareOptions(case_sensitive=not statement_says_case_insensitive(statement)),
        metadata=metadata,
    )


def _folder_order(folder: Path) -> tuple[bool, int, str]:
    name = folder.name
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def load_apps(path: str | Path) -> list[Problem]:
    """Problems of an APPS split folder (one sub-folder per problem, in task-id order) or of a
    single problem folder (one holding ``question.txt``)."""
    root = Path(path)
    if not root.is_dir():
        raise ProblemFormatError(str(root), None, None, "not an APPS folder: no such directory")
    if (root / "question.txt").is_file():
        return [load_apps_problem(root)]
    folders = sorted(
        (child for child in root.iterdir() if child.is_dir() and not child.name.startswith((".", "_"))),
        key=_folder_order,
    )
    if not folders:
        raise ProblemFormatError(
            str(root), None, None, "not an APPS folder: no question.txt and no problem sub-folders"
        )
    return [load_apps_problem(folder) for folder in folders]
