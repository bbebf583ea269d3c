"""executor/judge.py: which verdict wins when a raw harness report carries several kinds of
evidence: harness faults, then compile errors, the output limit, timeouts and memory."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from judge_reports import (
    ASSERT,
    CALL,
    COMPILE_EVENT,
    LIMITS,
    READY,
    STDIO,
    b64,
    check,
    check_times,
    exception_event,
    judged,
    report,
    returned,
    verdict_of,
)

from coderl.outcomes import Verdict

# ---- harness faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "oops", 42, [], {}, {"exit_code": 0, "stdout": b64("3\n")}])
def test_unreadable_report_is_a_sandbox_error(raw: Any) -> None:
    for test in (STDIO, CALL, ASSERT):
        result = judged(raw, test)
        check(result, Verdict.SANDBOX_ERROR, "SandboxError", "unreadable harness report")
        check_times(result, time_s=0.0, wall_s=0.0)


def test_harness_error_record_is_a_sandbox_error() -> None:
    record = {"outcome": "harness_error", "message": "Traceback ...\nKeyError: 'x'"}
    raw = report("assert", record=record, cpu_s=0.3, wall_s=0.4)
    result = judged(raw, ASSERT)
    check(result, Verdict.SANDBOX_ERROR, "SandboxError", "Traceback ...\nKeyError: 'x'")
    check_times(result, time_s=0.3, wall_s=0.4)


def test_harness_error_beats_everything_else() -> None:
    raw = report(
        "assert",
        killed_for="output",
        oom_killed=True,
        events=[COMPILE_EVENT],
        record={"outcome": "harness_error", "message": "boom"},
    )
    check(judged(raw, ASSERT), Verdict.SANDBOX_ERROR, "SandboxError", "boom")


def test_stdio_exit_status_lost_is_a_sandbox_error() -> None:
    raw = report(exit_code=None, signal_number=None, stdout="3\n", cpu_s=0.0)
    check(judged(raw), Verdict.SANDBOX_ERROR, "SandboxError", "the program's exit status was lost")


# ---- compile errors -------------------------------------------------------------------------------------


def test_compile_error_stdio() -> None:
    raw = report(events=[COMPILE_EVENT], exit_code=0)
    result = judged(raw)
    check(result, Verdict.COMPILE_ERROR, "SyntaxError", "invalid syntax (solution.py, line 1)")
    assert result.error is not None
    assert result.error.traceback == COMPILE_EVENT["traceback"]


def test_compile_error_call() -> None:
    raw = report("call", events=[COMPILE_EVENT], exit_code=0)
    check(judged(raw, CALL), Verdict.COMPILE_ERROR, "SyntaxError")


def test_compile_error_assert_comes_in_the_record() -> None:
    event = {key: COMPILE_EVENT[key] for key in ("event", "type", "message", "traceback")}
    event["type"] = "IndentationError"
    raw = report("assert", record={"outcome": "compile_error", "event": event}, exit_code=0)
    check(judged(raw, ASSERT), Verdict.COMPILE_ERROR, "IndentationError", event["message"])


def test_compile_error_without_a_type_is_a_syntax_error() -> None:
    raw = report(events=[{"event": "compile_error", "message": "source code cannot contain null bytes"}])
    check(judged(raw), Verdict.COMPILE_ERROR, "SyntaxError", "source code cannot contain null bytes")


def test_compile_error_beats_limits() -> None:
    raw = report(
        events=[COMPILE_EVENT],
        killed_for="output",
        signal_number=signal.SIGKILL,
        exit_code=None,
        oom_killed=True,
        cpu_s=10.0,
    )
    assert verdict_of(raw) == Verdict.COMPILE_ERROR


# ---- output limit ---------------------------------------------------------------------------------------


def test_output_limit() -> None:
    raw = report(killed_for="output", exit_code=None, signal_number=signal.SIGKILL, stdout="3\n")
    check(judged(raw), Verdict.OUTPUT_LIMIT, "OutputLimit", f"output exceeded {16 << 20} bytes")


def test_output_limit_beats_timeout_and_memory() -> None:
    raw = report(
        killed_for="output", exit_code=None, signal_number=signal.SIGXCPU, cpu_s=99.0, oom_killed=True
    )
    for test, mode in ((STDIO, "stdio"), (CALL, "call"), (ASSERT, "assert")):
        raw["mode"] = mode
        assert verdict_of(raw, test) == Verdict.OUTPUT_LIMIT


# ---- timeouts -------------------------------------------------------------------------------------------


def test_killed_for_cpu_is_a_timeout() -> None:
    raw = report(killed_for="cpu", exit_code=None, signal_number=signal.SIGKILL, cpu_s=4.01)
    check(judged(raw), Verdict.TIMEOUT, "Timeout", "CPU limit of 4.0 s exceeded")


def test_killed_for_wall_is_a_timeout() -> None:
    raw = report(killed_for="wall", exit_code=None, signal_number=signal.SIGKILL, cpu_s=0.01, wall_s=9.0)
    check(judged(raw), Verdict.TIMEOUT, "Timeout", "wall-clock limit of 9.0 s exceeded")


def test_sigxcpu_is_a_timeout_even_below_the_measured_limit() -> None:
    raw = report(exit_code=None, signal_number=int(signal.SIGXCPU), cpu_s=1.0)
    check(judged(raw), Verdict.TIMEOUT, "Timeout", "CPU limit of 4.0 s exceeded")


def test_sigkill_at_or_over_the_cpu_limit_is_a_timeout() -> None:
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=4.0)) == Verdict.TIMEOUT
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=5.5)) == Verdict.TIMEOUT
    # under the limit: killed, not timed out
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=3.99)) == Verdict.RUNTIME_ERROR


def test_cpu_over_the_limit_is_a_timeout_even_after_a_normal_exit() -> None:
    # cpu_s counts every process of the job: children that burnt it and were waited for included
    raw = report(exit_code=0, cpu_s=4.5, stdout="3\n")
    check(judged(raw), Verdict.TIMEOUT, "Timeout", "CPU limit of 4.0 s exceeded")
    assert verdict_of(report(exit_code=0, cpu_s=4.0, stdout="3\n")) == Verdict.PASSED  # at, not past


def test_out_of_memory_before_the_time_ran_out_is_a_memory_limit() -> None:
    raw = report(
        killed_for="cpu", exit_code=None, signal_number=9, oom_killed=True, oom_first=True, cpu_s=4.2
    )
    check(judged(raw), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_no_cpu_limit_means_no_cpu_timeout() -> None:
    raw = report(exit_code=None, signal_number=9, cpu_s=100.0)
    assert verdict_of(raw, limits={**LIMITS, "cpu_s": 0}) == Verdict.RUNTIME_ERROR


def test_timeouts_in_every_mode() -> None:
    for test, mode in ((STDIO, "stdio"), (CALL, "call"), (ASSERT, "assert")):
        raw = report(mode, killed_for="wall", exit_code=None, signal_number=9, events=[READY])
        assert verdict_of(raw, test) == Verdict.TIMEOUT


def test_timeout_beats_memory() -> None:
    raw = report(killed_for="cpu", exit_code=None, signal_number=9, oom_killed=True, cpu_s=4.2)
    assert verdict_of(raw) == Verdict.TIMEOUT


def test_timeout_beats_an_answer() -> None:
    raw = report("call", killed_for="cpu", exit_code=None, signal_number=9, events=returned(3), cpu_s=4.1)
    assert verdict_of(raw, CALL) == Verdict.TIMEOUT


# ---- memory ---------------------------------------------------------------------------------------------


def test_oom_kill_is_a_memory_limit() -> None:
    raw = report(exit_code=None, signal_number=signal.SIGKILL, oom_killed=True, cpu_s=0.5)
    check(judged(raw), Verdict.MEMORY_LIMIT, "MemoryLimit", "memory limit of 1024 MiB exceeded")


def test_memory_error_event_stdio() -> None:
    raw = report(exit_code=1, events=[exception_event("exception", "MemoryError")])
    check(judged(raw), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_error_raised_by_a_call() -> None:
    raw = report(
        "call", exit_code=None, signal_number=9, events=[READY, exception_event("raised", "MemoryError")]
    )
    check(judged(raw, CALL), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_error_in_the_assert_record() -> None:
    record = {"outcome": "candidate_raised", "event": {"type": "MemoryError", "message": ""}}
    raw = report("assert", exit_code=0, record=record)
    check(judged(raw, ASSERT), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_limit_message_uses_the_configured_limit() -> None:
    raw = report(exit_code=None, signal_number=9, oom_killed=True)
    result = judged(raw, STDIO, {**LIMITS, "memory_bytes": 256 << 20})
    check(result, Verdict.MEMORY_LIMIT, "MemoryLimit", "memory limit of 256 MiB exceeded")
