"""Who is blamed for a sandbox fault (executor/engine.py): a fault that follows one program
through every retry while a control program runs fine is that program's RUNTIME_ERROR, scored;
SANDBOX_ERROR stays for faults no program caused (the sandboxes fail for everything)."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pytest

from coderl.outcomes import RewardConfig, Verdict, reward
from executor import Executor, ExecutorConfig
from executor.engine import CONTROL_PROGRAM
from executor.sandbox.connection import SandboxFault, SandboxUnavailable
from problems import Problem, TestCase

SUM = Problem(task_id="sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="1 2\n", stdout="3\n")])
CRASHER = "print(3)\n# crashes its sandbox\n"


class FakeSandbox:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool

    def run(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.pool.runs.append(job["program"])
        if self.pool.outage or "crashes its sandbox" in job["program"]:
            raise SandboxFault("sandbox closed its stream")
        printed = "42" if job["program"] == CONTROL_PROGRAM else job["program"][6]  # print(N)
        stdout = base64.b64encode(printed.encode()).decode()
        return {
            "mode": "stdio",
            "exit_code": 0,
            "signal": None,
            "stdout": stdout,
            "events": [],
            "cpu_s": 0.01,
        }


class FakePool:
    def __init__(self, outage: bool = False, unavailable: bool = False) -> None:
        self.outage, self.unavailable = outage, unavailable
        self.runs: list[str] = []
        self.counters: Counter[str] = Counter()

    def acquire(self) -> FakeSandbox:
        if self.unavailable:
            raise SandboxUnavailable("no sandbox available: the engine is down")
        return FakeSandbox(self)

    def release(self, box: FakeSandbox) -> None:
        pass

    def recycle(self, box: FakeSandbox) -> None:
        self.counters["sandbox_recycles"] += 1

    def close(self) -> None:
        pass


def executor_with(pool: FakePool) -> Executor:
    ex = Executor.__new__(Executor)
    ex.config = ExecutorConfig(workers=1)
    ex.limits = ex.config.limits.as_job_limits()
    ex.pool = pool  # type: ignore[assignment]
    ex.counters = Counter()
    return ex


def test_a_program_that_always_faults_its_sandbox_is_a_scored_runtime_error() -> None:
    pool = FakePool()
    ex = executor_with(pool)
    result = ex.execute(SUM, CRASHER)
    assert result.verdict == Verdict.RUNTIME_ERROR
    assert reward(result.verdict) == RewardConfig().runtime_error  # scored by the learner
    assert result.error is not None and result.error.type == "SandboxFault"
    assert "3 times" in result.error.message and "closed its stream" in result.error.message
    assert result.attempts == 3
    assert pool.runs == [CRASHER] * 3 + [CONTROL_PROGRAM]  # three tries, then the control
    assert ex.counters["sandbox_faults_scored"] == 1 and pool.counters["sandbox_recycles"] == 3


def test_an_outage_is_a_sandbox_error_never_scored() -> None:
    pool = FakePool(outage=True)
    result = executor_with(pool).execute(SUM, "print(3)\n")
    assert result.verdict == Verdict.SANDBOX_ERROR
    assert "reward" not in result.model_dump()  # executors return verdicts only
    assert pool.runs[-1] == CONTROL_PROGRAM  # the control program failed too


def test_no_sandbox_at_all_is_a_sandbox_error_without_a_control_run() -> None:
    pool = FakePool(unavailable=True)
    result = executor_with(pool).execute(SUM, CRASHER)
    assert result.verdict == Verdict.SANDBOX_ERROR
    assert pool.runs == []


@pytest.mark.parametrize("program", ["print(3)\n", "print(4)\n"])
def test_healthy_programs_are_judged_once(program: str) -> None:
    pool = FakePool()
    result = executor_with(pool).execute(SUM, program)
    assert result.verdict == (Verdict.PASSED if "3" in program else Verdict.FAILED_TEST)
    assert pool.runs == [program]
