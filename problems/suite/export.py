"""Writing problems as an APPS split folder or as native JSONL, both read back by ``load_problems``.

An APPS problem folder (named by the task id) gets exactly the files ``problems/apps.py``
reads: ``question.txt`` (the statement), ``input_output.json`` (the hidden tests, with ``fn_name``
for call tests), CodeRL's ``example_input_output.json`` (the example tests, same shape),
``solutions.json``, ``metadata.json`` (``difficulty`` plus the problem's metadata) and, when there
is starter code, ``starter_code.py``. Loading the folder gives back the same statement, tests,
solutions, fn_name, starter code, difficulty and metadata (``source`` becomes ``"apps"``).
These writers serve any stdio or call problem, not only suite ones; what APPS cannot hold (assert
tests, a completion prefix, setup code, mixed test kinds) is a ValueError.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from problems import Problem, TestCase, TestKind, save_native_jsonl

__all__ = ["apps_files", "export_apps", "export_jsonl"]

log = logging.getLogger(__name__)

_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _io_json(problem: Problem, tests: list[TestCase]) -> dict[str, Any]:
    if problem.fn_name is None:
        return {"inputs": [t.stdin for t in tests], "outputs": [t.stdout for t in tests]}
    return {
        "inputs": [t.args for t in tests],
        "outputs": [t.expected for t in tests],
        "fn_name": problem.fn_name,
    }


def _check_representable(problem: Problem) -> None:
    where = f"problem {problem.task_id}"
    if not _FOLDER_NAME.fullmatch(problem.task_id):
        raise ValueError(f"{where}: task id is not a safe folder name (letters, digits, '.', '_', '-')")
    if problem.completion_prefix or problem.setup_code:
        raise ValueError(f"{where}: APPS folders cannot hold a completion prefix or setup code")
    wanted = TestKind.STDIO if problem.fn_name is None else TestKind.CALL
    wrong = {t.kind.value for t in problem.tests("all") if t.kind != wanted}
    if wrong:
        with_fn = "with" if problem.fn_name else "without"
        raise ValueError(f"{where}: {', '.join(sorted(wrong))} tests in a problem {with_fn} fn_name")


def apps_files(problem: Problem) -> dict[str, str]:
    """The files of ``problem``'s APPS folder: name -> text."""
    _check_representable(problem)
    files = {
        "question.txt": problem.statement,
        "input_output.json": json.dumps(_io_json(problem, problem.hidden_tests)),
        "example_input_output.json": json.dumps(_io_json(problem, problem.example_tests)),
        "solutions.json": json.dumps(problem.solutions),
        "metadata.json": json.dumps({"difficulty": problem.difficulty, **problem.metadata}),
    }
    if problem.starter_code:
        files["starter_code.py"] = problem.starter_code
    return files


def export_apps(problems: Iterable[Problem], out_dir: str | Path) -> list[Path]:
    """Write ``problems`` as an APPS split folder ``out_dir`` (created; existing problem folders
    are overwritten); returns the problem folders. Every problem is checked before any is written."""
    root = Path(out_dir)
    planned = [(problem.task_id, apps_files(problem)) for problem in problems]
    seen: set[str] = set()
    for task_id, _ in planned:
        if task_id in seen:
            raise ValueError(f"duplicate task id {task_id!r}: APPS folders are named by task id")
        seen.add(task_id)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for task_id, files in planned:
        folder = root / task_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        folders.append(folder)
    log.info("wrote %d APPS problem folders to %s", len(folders), root)
    return folders


def export_jsonl(problems: Iterable[Problem], path: str | Path) -> Path:
    """Write ``problems`` as native JSONL (one ``Problem.model_dump_json()`` per line)."""
    file = Path(path)
    problems = list(problems)
    save_native_jsonl(problems, file)
    log.info("wrote %d problems to %s", len(problems), file)
    return file
