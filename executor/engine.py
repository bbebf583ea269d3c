"""The executor: runs programs against a problem's tests in a sandbox pool and scores them."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from coderl.execution import ErrorInfo, ExecutionResult, TestOutcome
from coderl.outcomes import Verdict, program_verdict
from coderl.problem import Problem, TestCase
from executor.harness.protocol import LimitKey, ResultKey

from .config import ExecutorConfig
from .judge import Judgement, build_job, judge
from .sandbox.connection import SandboxFault, SandboxUnavailable
from .sandbox.pool import Sandbox, SandboxPool

log = logging.getLogger(__name__)
REPLY_SLACK_S = 15.0
CONTROL_PROBLEM = Problem(
    task_id="control",
    statement="print the sum of two integers",
    hidden_tests=[TestCase(kind="stdio", stdin="20 22\n", stdout="42\n")],
)
CONTROL_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


@dataclass(frozen=True)
class ExecutionItem:
    problem: Problem
    program: str
    which: str = "hidden"
    """hidden, example or all tests"""


class Executor:
    """Thread-safe; ``execute_many`` runs ``config.workers`` programs at a time."""

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self.config = config or ExecutorConfig()
        self.limits = self.config.limits.as_job_limits()
        self.pool = SandboxPool(self.config.sandbox, self.config.workers)
        self.counters: Counter[str] = Counter()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def execute(self, problem: Problem, program: str, which: str = "hidden") -> ExecutionResult:
        """Run one program. A sandbox fault is retried on a fresh sandbox; when every attempt
        faults with this program running while a control program runs fine, the fault is the
        program's (RUNTIME_ERROR, scored); SANDBOX_ERROR only when the sandboxes themselves fail."""
        tests = problem.tests(which)
        started = time.monotonic()
        faults: list[SandboxFault] = []
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                result = self._run_tests(problem, program, tests)
            except SandboxFault as fault:
                faults.append(fault)
                self.counters["sandbox_retries"] += 1
                log.warning("sandbox fault on %s (attempt %d): %s", problem.task_id, attempt, fault)
                continue
            result.attempts = attempt
            result.run_time_s = round(time.monotonic() - started, 4)
            self.counters[result.verdict.value] += 1
            return result
        result = self._unresolved(problem, len(tests), faults)
        result.run_time_s = round(time.monotonic() - started, 4)
        self.counters[result.verdict.value] += 1
        return result

    def _unresolved(self, problem: Problem, total: int, faults: list[SandboxFault]) -> ExecutionResult:
        message = str(faults[-1]) if faults else "no attempt made"
        attempts = self.config.max_attempts
        program_ran = faults and not any(isinstance(f, SandboxUnavailable) for f in faults)
        if program_ran and self._control_program_passes():
            self.counters["sandbox_faults_scored"] += 1
            log.warning(
                "%s: the sandbox failed %d times running this program while a control program passed; "
                "scored as a runtime error: %s",
                problem.task_id,
                attempts,
                message,
            )
            error = ErrorInfo(
                type="SandboxFault",
                message=f"the sandbox failed {attempts} times while running this program: {message}"[:2000],
            )
            return ExecutionResult(
                verdict=Verdict.RUNTIME_ERROR,
                tests_total=total,
                attempts=attempts,
                error=error,
            )
        return ExecutionResult(
            verdict=Verdict.SANDBOX_ERROR,
            tests_total=total,
            attempts=attempts,
            error=ErrorInfo(type="SandboxError", message=message[:2000]),
        )

    def _control_program_passes(self) -> bool:
        """Whether the sandboxes judge a known-correct program right now (an infrastructure
        outage fails this too, and then no fault is blamed on a program)."""
        try:
            result = self._run_tests(CONTROL_PROBLEM, CONTROL_PROGRAM, CONTROL_PROBLEM.tests("hidden"))
        except SandboxFault:
            return False
        return result.verdict == Verdict.PASSED

    def _run_tests(self, problem: Problem, program: str, tests: list[Any]) -> ExecutionResult:
        judgements: list[Judgement] = []
        box: Sandbox | None = None
        try:
            for index, test in enumerate(tests):
                box = box or self.pool.acquire()
                raw = box.run(
                    build_job(problem, program, test, self.limits),
                    timeout=float(self.limits[LimitKey.WALL_S]) + REPLY_SLACK_S,
                )
                if raw.get(ResultKey.CONTAMINATION):
                    # The verdict stands; the sandbox does not: later tests get a fresh one.
                    log.info("sandbox contaminated (%s); recycling", "; ".join(raw[ResultKey.CONTAMINATION]))
                    self.pool.recycle(box)
                    box = None
                judgement = judge(raw, test, problem.compare, self.limits)
                if judgement.outcome.verdict == Verdict.SANDBOX_ERROR:
                    raise SandboxFault(judgement.error.message if judgement.error else "sandbox error")
                if judgement.error is not None:
                    judgement = Judgement(
                        judgement.outcome, judgement.error.model_copy(update={"test_index": index})
                    )
                judgements.append(judgement)
                verdict = judgement.outcome.verdict
                if verdict == Verdict.COMPILE_ERROR or (
                    verdict != Verdict.PASSED and self.config.stop_on_first_failure
                ):
                    break
        except SandboxFault:
            if box is not None:
                self.pool.recycle(box)
                box = None
            raise
        finally:
            if box is not None:
                self.pool.release(box)
        return self._score(judgements, len(tests))

    def _score(self, judgements: list[Judgement], total: int) -> ExecutionResult:
        outcomes: list[TestOutcome] = [j.outcome for j in judgements]
        verdict = program_verdict([o.verdict for o in outcomes])
        if verdict == Verdict.SANDBOX_ERROR:  # a problem without tests cannot be judged
            return ExecutionResult(
                verdict=verdict,
                tests_total=total,
                error=ErrorInfo(type="NoTests", message="the problem has no tests of this kind"),
            )
        first_error = next((j.error for j in judgements if j.error is not None), None)
        return ExecutionResult(
            verdict=verdict,
            tests=outcomes,
            tests_total=total,
            error=first_error,
        )

    def execute_many(
        self, items: Iterable[ExecutionItem], on_result: Callable[[int, ExecutionResult], None] | None = None
    ) -> list[ExecutionResult]:
        """Run items in parallel; results in input order. ``on_result`` sees each as it finishes."""
        items = list(items)
        return collect_in_order(self.iter_results(items), len(items), on_result)

    def iter_results(self, items: list[ExecutionItem]) -> Iterator[tuple[int, ExecutionResult]]:
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="executor") as threads:
            futures = {
                threads.submit(self.execute, item.problem, item.program, item.which): index
                for index, item in enumerate(items)
            }
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                yield futures[future], future.result()


def collect_in_order(
    pairs: Iterable[tuple[int, ExecutionResult]],
    count: int,
    on_result: Callable[[int, ExecutionResult], None] | None = None,
) -> list[ExecutionResult]:
    """Gather ``(index, result)`` pairs arriving in any order into a list in index order."""
    results: list[ExecutionResult | None] = [None] * count
    for index, result in pairs:
        results[index] = result
        if on_result is not None:
            on_result(index, result)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"no result for items {missing[:10]} ({len(missing)} missing)")
    return [r for r in results if r is not None]
