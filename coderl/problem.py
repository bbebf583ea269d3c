"""The one internal problem model every loader produces and the executor consumes.

A problem has example tests (public: shown in the statement, used for filtering and critical
sampling) and hidden tests (used for rewards and pass@k), kept apart. Each test is one of:

- ``stdio``: the program reads ``stdin`` and its standard output is compared with ``stdout``;
- ``call``: ``fn_name(*args)`` is called (a method of ``class Solution`` when the program
  defines one) and its return value is compared with ``expected`` outside the sandbox;
- ``assert``: ``code`` (Python statements, e.g. an MBPP ``assert`` or HumanEval's
  ``check(candidate)``) runs after the program; it passes when it completes without raising.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TestKind(StrEnum):
    __test__ = False  # not a pytest class

    STDIO = "stdio"
    CALL = "call"
    ASSERT = "assert"


class TestCase(BaseModel):
    """One unit test. Only the fields of its kind are set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False  # not a pytest class

    kind: TestKind
    stdin: str | None = None
    """stdio: the program's standard input"""
    stdout: str | None = None
    """stdio: the expected standard output"""
    args: list[Any] | None = None
    """call: positional arguments (JSON values)"""
    expected: Any = None
    """call: the expected return value (JSON value)"""
    code: str | None = None
    """assert: statements that raise when the program is wrong"""

    @model_validator(mode="after")
    def _fields_match_kind(self) -> TestCase:
        required = {
            TestKind.STDIO: ("stdin", "stdout"),
            TestKind.CALL: ("args",),
            TestKind.ASSERT: ("code",),
        }[self.kind]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind.value} test needs {', '.join(missing)}")
        return self


class CompareOptions(BaseModel):
    """How outputs are compared; see executor/compare.py for the exact rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_sensitive: bool = True
    """False only where the problem statement says output case does not matter"""
    float_rel_tol: float = 1e-6
    float_abs_tol: float = 1e-6


class Problem(BaseModel):
    """A programming problem in any supported source format."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    source: str = "native"
    """where it came from: apps, mbpp, humaneval or native"""
    statement: str
    """the natural-language problem (APPS question, MBPP text, HumanEval prompt)"""
    starter_code: str = ""
    fn_name: str | None = None
    """call tests: the function to call; HumanEval: the entry point"""
    completion_prefix: str = ""
    """prepended to a sample's ``completion`` to form the program (HumanEval: the prompt)"""
    setup_code: str = ""
    """run before assert tests in the test namespace (MBPP test_setup_code)"""
    example_tests: list[TestCase] = Field(default_factory=list)
    hidden_tests: list[TestCase] = Field(default_factory=list)
    solutions: list[str] = Field(default_factory=list)
    """ground-truth programs, when the source has them"""
    difficulty: str | None = None
    compare: CompareOptions = Field(default_factory=CompareOptions)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def tests(self, which: str) -> list[TestCase]:
        """``which`` is "hidden", "example" or "all" (example tests first)."""
        if which == "hidden":
            return list(self.hidden_tests)
        if which == "example":
            return list(self.example_tests)
        if which == "all":
            return list(self.example_tests) + list(self.hidden_tests)
        raise ValueError(f"which tests: expected 'hidden', 'example' or 'all', got {which!r}")

    def program_from_completion(self, completion: str) -> str:
        """The whole program for a completion appended to ``completion_prefix`` (HumanEval style)."""
        return self.completion_prefix + completion


class ProblemFormatError(ValueError):
    """Malformed problem data; the message names the file, the problem and the field."""

    def __init__(self, path: str, problem: str | None, field: str | None, reason: str) -> None:
        where = path
        if problem is not None:
            where += f", problem {problem}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")
        self.path, self.problem, self.field, self.reason = path, problem, field, reason
