"""The native problem format, and the JSON-record reading shared by the JSONL loaders.

Native JSONL is one ``Problem.model_dump_json()`` per line (``.gz`` compressed when the name ends
in ``.gz``). The helpers below read JSONL (or a JSON file holding a list of objects) and check
record fields, turning every malformation into a ``ProblemFormatError`` that names the file, the
problem and the field.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from coderl.problem import Problem, ProblemFormatError

_MISSING: Any = object()

_EXPECTED = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _open_text(path: Path, mode: str, gz: bool | None = None) -> IO[str]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")  # the caller closes it


def iter_json_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for each object of a JSONL file, or of a JSON file holding a list
    of objects or one object.

    ``where`` ("line 3", "record 3", both 1-based) locates the record for error messages. Blank
    lines are skipped; a ``.gz`` name is read through gzip.
    """
    file = Path(path)
    try:
        with _open_text(file, "rt") as stream:
            first = True
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                is_list = line.lstrip().startswith("[")
                if first and (is_list or not _is_json(line)):  # a JSON list, or one multi-line object?
                    text = line + stream.read()
                    if is_list or _is_json(text):
                        yield from _array_records(file, text, number)
                        return
                first = False
                yield _line_record(file, number, line)
    except ProblemFormatError:
        raise
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ProblemFormatError(str(file), None, None, f"cannot read: {exc}") from exc


def _line_record(file: Path, number: int, line: str) -> tuple[str, dict[str, Any]]:
    where = f"line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProblemFormatError(
            str(file), None, None, f"{where}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from exc
    if not isinstance(record, dict):
        raise ProblemFormatError(
            str(file), None, None, f"{where}: expected an object, got {json_type(record)}"
        )
    return where, record


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _array_records(file: Path, text: str, first_line: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of a JSON list, or of one (multi-line) JSON object, starting at ``first_line``."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        line = exc.lineno + first_line - 1
        raise ProblemFormatError(
            str(file), None, None, f"line {line}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from exc
    if isinstance(records, dict):
        yield "record 1", records
        return
    if not isinstance(records, list):
        raise ProblemFormatError(
            str(file), None, None, f"expected a list of objects, got {json_type(records)}"
        )
    for index, record in enumerate(records, start=1):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise ProblemFormatError(
                str(file), None, None, f"{where}: expected an object, got {json_type(record)}"
            )
        yield where, record


def record_field(
    record: dict[str, Any],
    name: str,
    kind: type,
    *,
    path: str | Path,
    problem: str | None,
    where: str = "",
    default: Any = _MISSING,
) -> Any:
    """``record[name]`` checked to be of ``kind`` (str, list, dict or int).

    Without ``default`` the field is required; with one, a missing or null field gives the default.
    """
    prefix = f"{where}: " if where else ""
    value = record.get(name)
    if value is None:
        if default is not _MISSING:
            return default
        reason = "missing required field" if name not in record else f"expected {_EXPECTED[kind]}, got null"
        raise ProblemFormatError(str(path), problem, name, prefix + reason)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProblemFormatError(
            str(path), problem, name, f"{prefix}expected {_EXPECTED[kind]}, got {json_type(value)}"
        )
    return value


def string_list(
    value: list[Any], name: str, *, path: str | Path, problem: str | None, where: str = ""
) -> list[str]:
    """``value`` checked to hold only strings; the error names the bad element as ``name[i]``."""
    for index, item in enumerate(value):
        if not isinstance(item, str):
            prefix = f"{where}: " if where else ""
            raise ProblemFormatError(
                str(path), problem, f"{name}[{index}]", f"{prefix}expected a string, got {json_type(item)}"
            )
    return list(value)


def load_native_jsonl(path: str | Path) -> list[Problem]:
    """Problems from native JSONL: one ``Problem`` JSON object per line."""
    problems: list[Problem] = []
    for where, record in iter_json_records(path):
        task_id = record.get("task_id")
        problem = task_id if isinstance(task_id, str) else None
        try:
            problems.append(Problem.model_validate(record))
        except ValidationError as exc:
            errors = exc.errors()
            field = ".".join(str(part) for part in errors[0]["loc"]) or None
            more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
            raise ProblemFormatError(str(path), problem, field, f"{where}: {errors[0]['msg']}{more}") from exc
    return problems


def save_native_jsonl(problems: Iterable[Problem], path: str | Path) -> None:
    """Write ``problems`` as native JSONL (gzip when the name ends in ``.gz``), replacing ``path``
    atomically; missing parent folders are created."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
    try:
        with _open_text(partial, "wt", gz=file.name.endswith(".gz")) as stream:
            for problem in problems:
                stream.write(problem.model_dump_json() + "\n")
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)
