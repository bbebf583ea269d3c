"""Execution results: the program's verdict, per-test outcomes and first error (torch-free).

Executors never score: the learner maps a verdict to CodeRL's class and reward (coderl.outcomes).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .outcomes import Verdict


class ErrorInfo(BaseModel):
    """The first failure, as the repair step sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    """exception class (NameError, ...) or WrongAnswer, Timeout, MemoryLimit, OutputLimit, ..."""
    message: str = ""
    traceback: str = ""
    test_index: int | None = None


class TestOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False

    verdict: Verdict
    time_s: float = 0.0
    """CPU seconds of the program's process"""
    wall_s: float = 0.0


class ExecutionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    """the program's verdict; its CodeRL class and reward are the learner's to give
    (coderl.outcomes), under the run's own reward settings"""
    tests: list[TestOutcome] = Field(default_factory=list)
    """outcomes of the tests that ran, in order (later tests are skipped after a failure)"""
    tests_total: int = 0
    error: ErrorInfo | None = None
    run_time_s: float = 0.0
    """wall time of the whole program, all tests"""
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASSED
