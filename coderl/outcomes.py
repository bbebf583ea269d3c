"""Execution verdicts, CodeRL's four critic classes and the rewards attached to them.

CodeRL (Le et al. 2022, eqs. 4-7) scores a program by its first failure:

    r(W) = -1.0  if W cannot be compiled        (COMPILE_ERROR)
    r(W) = -0.6  if W raises at run time        (RUNTIME_ERROR; timeouts and limits count here)
    r(W) = -0.3  if W fails a unit test          (FAILED_TEST)
    r(W) = +1.0  if W passes every unit test     (PASSED)

SANDBOX_ERROR is an infrastructure fault, never the program's: it has no class and no reward and
must be retried or masked, never scored.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from pydantic import BaseModel, ConfigDict


class Verdict(StrEnum):
    """Outcome of one test run, or of a whole program (the first non-passing test's verdict)."""

    PASSED = "PASSED"
    FAILED_TEST = "FAILED_TEST"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    COMPILE_ERROR = "COMPILE_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SANDBOX_ERROR = "SANDBOX_ERROR"


class OutcomeClass(IntEnum):
    """CodeRL's critic classes, numbered as in the official code (datasets/utils.py)."""

    COMPILE_ERROR = 0
    RUNTIME_ERROR = 1
    FAILED_TEST = 2
    PASSED = 3


_CLASS_OF_VERDICT = {
    Verdict.PASSED: OutcomeClass.PASSED,
    Verdict.FAILED_TEST: OutcomeClass.FAILED_TEST,
    Verdict.RUNTIME_ERROR: OutcomeClass.RUNTIME_ERROR,
    Verdict.TIMEOUT: OutcomeClass.RUNTIME_ERROR,
    Verdict.MEMORY_LIMIT: OutcomeClass.RUNTIME_ERROR,
    Verdict.OUTPUT_LIMIT: OutcomeClass.RUNTIME_ERROR,
    Verdict.COMPILE_ERROR: OutcomeClass.COMPILE_ERROR,
}


class InfrastructureFault(ValueError):
    """Raised when a SANDBOX_ERROR is asked for a class or a reward."""


def outcome_class(verdict: Verdict) -> OutcomeClass:
    """Map a verdict to CodeRL's critic class; limits and timeouts are runtime errors (as in CodeRL)."""
    try:
        return _CLASS_OF_VERDICT[Verdict(verdict)]
    except KeyError:
        raise InfrastructureFault(
            f"{verdict} is an infrastructure fault: retry the sample or mask it, never score it"
        ) from None


class RewardConfig(BaseModel):
    """Reward per critic class; defaults are CodeRL's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    compile_error: float = -1.0
    """reward of a program that does not compile"""
    runtime_error: float = -0.6
    """reward of a program that raises, times out or exceeds a limit"""
    failed_test: float = -0.3
    """reward of a program that runs but fails a test"""
    passed: float = 1.0
    """reward of a program that passes every test"""

    def for_class(self, cls: OutcomeClass) -> float:
        return {
            OutcomeClass.COMPILE_ERROR: self.compile_error,
            OutcomeClass.RUNTIME_ERROR: self.runtime_error,
            OutcomeClass.FAILED_TEST: self.failed_test,
            OutcomeClass.PASSED: self.passed,
        }[cls]


def reward(verdict: Verdict, config: RewardConfig | None = None) -> float:
    """r(W) for a program verdict: ``config.for_class(outcome_class(verdict))``."""
    return (config or RewardConfig()).for_class(outcome_class(verdict))


def program_verdict(test_verdicts: list[Verdict]) -> Verdict:
    """A program's verdict: the first non-PASSED test's verdict, PASSED if all passed.

    A program with no tests cannot be judged as passing (the official aggregation's empty-list
    bug): that is a SANDBOX_ERROR, an error in the problem data, not a model outcome.
    """
    if not test_verdicts:
        return Verdict.SANDBOX_ERROR
    for verdict in test_verdicts:
        if verdict != Verdict.PASSED:
            return verdict
    return Verdict.PASSED
