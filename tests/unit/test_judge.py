"""executor/judge.py: the verdict precedence over synthetic raw harness reports, and build_job.

``report()`` builds a raw report shaped like ``executor/harness/job.py`` ``Job.result()`` plus the
``oom_killed`` and ``contamination`` keys that ``executor/harness/server.py`` ``Server.run`` adds.
"""

from __future__ import annotations

import base64
import json
import signal
from typing import Any

import pytest

from coderl.outcomes import Verdict
from coderl.problems import CompareOptions, Problem, TestCase
from executor.config import LimitsConfig
from executor.harness import values, wire
from executor.judge import APPS_PRELUDE, MESSAGE_LIMIT, Judgement, build_job, judge

LIMITS = LimitsConfig().as_job_limits()  # cpu_s 4.0, wall_s 9.0, 1024 MiB, 16 MiB output
OPTIONS = CompareOptions()

STDIO = TestCase(kind="stdio", stdin="1 2\n", stdout="3\n")
CALL = TestCase(kind="call", args=[1, 2], expected=3)
ASSERT = TestCase(kind="assert", code="assert add(1, 2) == 3")


def b64(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def report(
    mode: str = "stdio",
    *,
    exit_code: int | None = 0,
    signal_number: int | None = None,
    killed_for: str | None = None,
    stop_reason: str | None = "exited",
    cpu_s: float = 0.05,
    wall_s: float = 0.12,
    stdout: str | bytes = "",
    stderr: str | bytes = "",
    events: list[dict[str, Any]] | None = None,
    record: dict[str, Any] | None = None,
    oom_killed: bool = False,
    contamination: list[str] | None = None,
) -> dict[str, Any]:
    """A raw harness report as Job.result() + Server.run produce it (stdout/stderr base64)."""
    out = stdout.encode() if isinstance(stdout, str) else stdout
    err = stderr.encode() if isinstance(stderr, str) else stderr
    return {
        "id": "job-1",
        "mode": mode,
        "exit_code": exit_code,
        "signal": signal_number,
        "killed_for": killed_for,
        "stop_reason": stop_reason,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "max_rss_kb": 12_345,
        "stdout": b64(out),
        "stdout_bytes": len(out),
        "stderr": b64(err),
        "stderr_bytes": len(err),
        "events": events if events is not None else [],
        "record": record,
        "kill_rounds": 1,
        "oom_killed": oom_killed,
        "contamination": contamination if contamination is not None else [],
    }


def exception_event(
    kind: str = "exception", type_: str = "ZeroDivisionError", **extra: Any
) -> dict[str, Any]:
    return {
        "event": kind,
        "type": type_,
        "builtin": True,
        "message": f"{type_} happened",
        "traceback": f'Traceback (most recent call last):\n  File "solution.py", line 1\n{type_}',
        **extra,
    }


COMPILE_EVENT = {
    "event": "compile_error",
    "type": "SyntaxError",
    "builtin": True,
    "message": "invalid syntax (solution.py, line 1)",
    "traceback": '  File "solution.py", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax',
}
READY = {"event": "ready", "callables": ["add"], "values": {}}


def returned(value: Any) -> list[dict[str, Any]]:
    return [READY, {"event": "returned", "value": values.encode(value)}]


def verdict_of(raw: Any, test: TestCase = STDIO, limits: dict[str, Any] | None = None) -> Verdict:
    return judge(raw, test, OPTIONS, LIMITS if limits is None else limits).outcome.verdict


def check(
    judgement: Judgement, verdict: Verdict, error_type: str | None = None, message: str | None = None
) -> None:
    assert judgement.outcome.verdict == verdict
    if verdict == Verdict.PASSED:
        assert judgement.error is None
        return
    assert judgement.error is not None
    if error_type is not None:
        assert judgement.error.type == error_type
    if message is not None:
        assert judgement.error.message == message


# ---- harness faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "oops", 42, [], {}, {"exit_code": 0, "stdout": b64("3\n")}])
def test_unreadable_report_is_a_sandbox_error(raw: Any) -> None:
    for test in (STDIO, CALL, ASSERT):
        result = judge(raw, test, OPTIONS, LIMITS)
        check(result, Verdict.SANDBOX_ERROR, "SandboxError", "unreadable harness report")
        assert result.outcome.time_s == 0.0
        assert result.outcome.wall_s == 0.0


def test_harness_error_record_is_a_sandbox_error() -> None:
    raw = report(
        "assert",
        record={"outcome": "harness_error", "message": "Traceback ...\nKeyError: 'x'"},
        cpu_s=0.3,
        wall_s=0.4,
    )
    result = judge(raw, ASSERT, OPTIONS, LIMITS)
    check(result, Verdict.SANDBOX_ERROR, "SandboxError", "Traceback ...\nKeyError: 'x'")
    assert result.outcome.time_s == 0.3
    assert result.outcome.wall_s == 0.4


def test_harness_error_beats_everything_else() -> None:
    raw = report(
        "assert",
        killed_for="output",
        oom_killed=True,
        events=[COMPILE_EVENT],
        record={"outcome": "harness_error", "message": "boom"},
    )
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.SANDBOX_ERROR, "SandboxError", "boom")


def test_stdio_exit_status_lost_is_a_sandbox_error() -> None:
    raw = report(exit_code=None, signal_number=None, stdout="3\n", cpu_s=0.0)
    check(
        judge(raw, STDIO, OPTIONS, LIMITS),
        Verdict.SANDBOX_ERROR,
        "SandboxError",
        "the program's exit status was lost",
    )


# ---- compile errors -------------------------------------------------------------------------------------


def test_compile_error_stdio() -> None:
    raw = report(events=[COMPILE_EVENT], exit_code=0)
    result = judge(raw, STDIO, OPTIONS, LIMITS)
    check(result, Verdict.COMPILE_ERROR, "SyntaxError", "invalid syntax (solution.py, line 1)")
    assert result.error is not None
    assert result.error.traceback == COMPILE_EVENT["traceback"]


def test_compile_error_call() -> None:
    raw = report("call", events=[COMPILE_EVENT], exit_code=0)
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.COMPILE_ERROR, "SyntaxError")


def test_compile_error_assert_comes_in_the_record() -> None:
    event = {key: COMPILE_EVENT[key] for key in ("event", "type", "message", "traceback")}
    event["type"] = "IndentationError"
    raw = report("assert", record={"outcome": "compile_error", "event": event}, exit_code=0)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.COMPILE_ERROR, "IndentationError", event["message"])


def test_compile_error_without_a_type_is_a_syntax_error() -> None:
    raw = report(events=[{"event": "compile_error", "message": "source code cannot contain null bytes"}])
    check(
        judge(raw, STDIO, OPTIONS, LIMITS),
        Verdict.COMPILE_ERROR,
        "SyntaxError",
        "source code cannot contain null bytes",
    )


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
    check(
        judge(raw, STDIO, OPTIONS, LIMITS),
        Verdict.OUTPUT_LIMIT,
        "OutputLimit",
        f"output exceeded {16 << 20} bytes",
    )


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
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.TIMEOUT, "Timeout", "CPU limit of 4.0 s exceeded")


def test_killed_for_wall_is_a_timeout() -> None:
    raw = report(killed_for="wall", exit_code=None, signal_number=signal.SIGKILL, cpu_s=0.01, wall_s=9.0)
    check(
        judge(raw, STDIO, OPTIONS, LIMITS), Verdict.TIMEOUT, "Timeout", "wall-clock limit of 9.0 s exceeded"
    )


def test_sigxcpu_is_a_timeout_even_below_the_measured_limit() -> None:
    raw = report(exit_code=None, signal_number=int(signal.SIGXCPU), cpu_s=1.0)
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.TIMEOUT, "Timeout", "CPU limit of 4.0 s exceeded")


def test_sigkill_at_or_over_the_cpu_limit_is_a_timeout() -> None:
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=4.0)) == Verdict.TIMEOUT
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=5.5)) == Verdict.TIMEOUT
    # under the limit: killed, not timed out
    assert verdict_of(report(exit_code=None, signal_number=9, cpu_s=3.99)) == Verdict.RUNTIME_ERROR


def test_cpu_over_the_limit_without_a_signal_is_not_a_timeout() -> None:
    raw = report(exit_code=0, cpu_s=4.5, stdout="3\n")
    assert verdict_of(raw) == Verdict.PASSED


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
    check(
        judge(raw, STDIO, OPTIONS, LIMITS),
        Verdict.MEMORY_LIMIT,
        "MemoryLimit",
        "memory limit of 1024 MiB exceeded",
    )


def test_memory_error_event_stdio() -> None:
    raw = report(exit_code=1, events=[exception_event("exception", "MemoryError")])
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_error_raised_by_a_call() -> None:
    raw = report(
        "call", exit_code=None, signal_number=9, events=[READY, exception_event("raised", "MemoryError")]
    )
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_error_in_the_assert_record() -> None:
    record = {"outcome": "candidate_raised", "event": {"type": "MemoryError", "message": ""}}
    raw = report("assert", exit_code=0, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.MEMORY_LIMIT, "MemoryLimit")


def test_memory_limit_message_uses_the_configured_limit() -> None:
    raw = report(exit_code=None, signal_number=9, oom_killed=True)
    result = judge(raw, STDIO, OPTIONS, {**LIMITS, "memory_bytes": 256 << 20})
    check(result, Verdict.MEMORY_LIMIT, "MemoryLimit", "memory limit of 256 MiB exceeded")


# ---- stdio ----------------------------------------------------------------------------------------------


def test_stdio_passed() -> None:
    raw = report(stdout="3\n", cpu_s=0.25, wall_s=0.5)
    result = judge(raw, STDIO, OPTIONS, LIMITS)
    check(result, Verdict.PASSED)
    assert result.outcome.time_s == 0.25
    assert result.outcome.wall_s == 0.5


def test_stdio_passed_modulo_trailing_whitespace() -> None:
    assert verdict_of(report(stdout="3   \r\n\n\n")) == Verdict.PASSED
    assert verdict_of(report(stdout="3")) == Verdict.PASSED


def test_stdio_wrong_output_is_a_failed_test_with_a_reason() -> None:
    check(
        judge(report(stdout="4\n"), STDIO, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "line 1, token 1: expected '3', got '4'",
    )
    check(
        judge(report(stdout=""), STDIO, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "expected 1 line, got 0",
    )
    check(
        judge(report(stdout="3\n3\n"), STDIO, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "expected 1 line, got 2",
    )


def test_stdio_non_utf8_output_is_compared_not_crashed() -> None:
    assert verdict_of(report(stdout=b"\xff\xfe\n")) == Verdict.FAILED_TEST


def test_stdio_killed_by_a_signal() -> None:
    raw = report(exit_code=None, signal_number=int(signal.SIGSEGV), stderr="Fatal Python error")
    result = judge(raw, STDIO, OPTIONS, LIMITS)
    check(result, Verdict.RUNTIME_ERROR, "SIGSEGV", "killed by SIGSEGV")
    assert result.error is not None
    assert result.error.traceback == "Fatal Python error"


def test_stdio_killed_by_an_unknown_signal_number() -> None:
    raw = report(exit_code=None, signal_number=200)
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "signal 200", "killed by signal 200")


def test_stdio_exception_event_gives_the_exception_type() -> None:
    event = exception_event("exception", "ZeroDivisionError")
    raw = report(exit_code=1, events=[event], stderr="Traceback ...")
    result = judge(raw, STDIO, OPTIONS, LIMITS)
    check(result, Verdict.RUNTIME_ERROR, "ZeroDivisionError", "ZeroDivisionError happened")
    assert result.error is not None
    assert result.error.traceback == event["traceback"]


def test_stdio_non_zero_exit_without_an_event() -> None:
    raw = report(exit_code=3, stderr="bye\n")
    result = judge(raw, STDIO, OPTIONS, LIMITS)
    check(result, Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 3")
    assert result.error is not None
    assert result.error.traceback == "bye\n"


def test_stdio_right_answer_then_non_zero_exit_is_a_runtime_error() -> None:
    raw = report(exit_code=1, stdout="3\n", events=[{"event": "exited", "code": 1}])
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 1")
    raw = report(exit_code=1, stdout="3\n", events=[exception_event("exception", "IndexError")])
    check(judge(raw, STDIO, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "IndexError")


def test_stdio_right_answer_then_exit_zero_passes() -> None:
    raw = report(exit_code=0, stdout="3\n", events=[{"event": "exited", "code": 0}])
    assert verdict_of(raw) == Verdict.PASSED


def test_stdio_exception_event_ignored_when_the_exit_is_clean() -> None:
    # evidence is weighed by the exit status first: a clean exit is compared
    raw = report(exit_code=0, stdout="3\n", events=[exception_event()])
    assert verdict_of(raw) == Verdict.PASSED


def test_stdio_messages_are_capped() -> None:
    event = exception_event(message="m" * 5000, traceback="t" * 4000 + "END")
    result = judge(report(exit_code=1, events=[event]), STDIO, OPTIONS, LIMITS)
    assert result.error is not None
    assert len(result.error.message) == MESSAGE_LIMIT
    assert len(result.error.traceback) == MESSAGE_LIMIT
    assert result.error.traceback.endswith("END")


def test_contamination_does_not_change_the_verdict() -> None:
    raw = report(stdout="3\n", contamination=["/tmp not empty after cleanup"])
    assert verdict_of(raw) == Verdict.PASSED


# ---- call -----------------------------------------------------------------------------------------------


def test_call_returned_equal() -> None:
    raw = report("call", exit_code=0, events=returned(3))
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.PASSED)


def test_call_killed_after_answering_still_passes() -> None:
    # the server SIGKILLs a candidate that does not exit within 20 ms of answering
    raw = report("call", exit_code=None, signal_number=9, events=returned(3), stop_reason="answered")
    assert verdict_of(raw, CALL) == Verdict.PASSED


def test_call_returned_equal_structures() -> None:
    test = TestCase(kind="call", args=[], expected=[[1, 2], {"a": 2**70}])
    raw = report("call", events=returned(((1, 2), {"a": 2**70})))
    assert verdict_of(raw, test) == Verdict.PASSED
    unwrapped = TestCase(kind="call", args=[], expected=[5])  # APPS one-element list rule
    assert verdict_of(report("call", events=returned(5)), unwrapped) == Verdict.PASSED


def test_call_returned_unequal() -> None:
    raw = report("call", events=returned(4))
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.FAILED_TEST, "WrongAnswer", "expected 3, got 4")
    check(
        judge(report("call", events=returned("3")), CALL, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "expected int, got str",
    )
    assert verdict_of(report("call", events=returned(True)), TestCase(kind="call", args=[], expected=1)) == (
        Verdict.FAILED_TEST
    )


def test_call_returned_unsupported() -> None:
    raw = report("call", events=[READY, {"event": "returned", "value": {"$unsupported": "AlwaysEqual"}}])
    check(
        judge(raw, CALL, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "returned a AlwaysEqual, not plain data",
    )


def test_call_returned_unsupported_inside_a_list() -> None:
    test = TestCase(kind="call", args=[], expected=[3])
    raw = report("call", events=[READY, {"event": "returned", "value": [{"$unsupported": "Weird"}]}])
    check(judge(raw, test, OPTIONS, LIMITS), Verdict.FAILED_TEST, "WrongAnswer")


@pytest.mark.parametrize(
    "value",
    [
        {"$nope": 1},
        {"$int": "12x"},
        {"a": 1, "b": 2},
        {"$set": [[1]]},
        {"$tuple": "x"},
        {"$set": [{"$unsupported": "Foo"}]},  # what encode({Foo()}) sends: unhashable stand-in
    ],
)
def test_call_returned_undecodable(value: Any) -> None:
    raw = report("call", events=[READY, {"event": "returned", "value": value}])
    result = judge(raw, CALL, OPTIONS, LIMITS)
    check(result, Verdict.FAILED_TEST, "WrongAnswer")
    assert result.error is not None
    assert result.error.message.startswith("unreadable return value: ")


def test_call_returned_too_deep() -> None:
    deep: Any = 3
    for _ in range(values.MAX_DEPTH + 5):
        deep = [deep]
    raw = report("call", events=[READY, {"event": "returned", "value": deep}])
    assert verdict_of(raw, CALL) == Verdict.FAILED_TEST


def test_call_raised() -> None:
    raw = report("call", exit_code=0, events=[READY, exception_event("raised", "KeyError")])
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "KeyError", "KeyError happened")


def test_call_raised_at_import() -> None:
    raw = report("call", exit_code=1, events=[exception_event("exception", "NameError")])
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "NameError")


def test_call_exited_zero_is_no_answer() -> None:
    raw = report("call", exit_code=0, events=[READY, {"event": "exited", "code": 0}])
    check(
        judge(raw, CALL, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "NoAnswer",
        "the program exited instead of returning",
    )


def test_call_exited_non_zero_is_a_runtime_error() -> None:
    raw = report("call", exit_code=3, events=[READY, {"event": "exited", "code": 3}])
    check(judge(raw, CALL, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "SystemExit", "exit code 3")


def test_call_first_terminal_event_counts() -> None:
    events = [READY, {"event": "returned", "value": 3}, exception_event("raised", "ValueError")]
    assert verdict_of(report("call", events=events), CALL) == Verdict.PASSED
    events = [READY, exception_event("raised", "ValueError"), {"event": "returned", "value": 3}]
    assert verdict_of(report("call", events=events), CALL) == Verdict.RUNTIME_ERROR


def test_call_no_event_clean_exit_is_no_answer() -> None:
    raw = report("call", exit_code=0, events=[READY])
    check(
        judge(raw, CALL, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "NoAnswer",
        "the program ended without returning a value",
    )
    assert verdict_of(report("call", exit_code=0, events=[]), CALL) == Verdict.FAILED_TEST


def test_call_no_event_non_zero_exit_or_signal_is_a_runtime_error() -> None:
    check(
        judge(report("call", exit_code=2, events=[READY]), CALL, OPTIONS, LIMITS),
        Verdict.RUNTIME_ERROR,
        "NonZeroExit",
        "exit code 2",
    )
    check(
        judge(report("call", exit_code=None, signal_number=11), CALL, OPTIONS, LIMITS),
        Verdict.RUNTIME_ERROR,
        "SIGSEGV",
        "killed by SIGSEGV",
    )


def test_call_no_event_and_exit_status_lost_is_a_sandbox_error() -> None:
    raw = report("call", exit_code=None, signal_number=None, events=[READY], cpu_s=0.0)
    assert verdict_of(raw, CALL) == Verdict.SANDBOX_ERROR


def test_call_with_an_answer_and_exit_status_lost_is_judged() -> None:
    raw = report("call", exit_code=None, signal_number=None, events=returned(3))
    assert verdict_of(raw, CALL) == Verdict.PASSED


# ---- assert ---------------------------------------------------------------------------------------------


def test_assert_passed() -> None:
    raw = report("assert", exit_code=0, record={"outcome": "passed"})
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.PASSED)


def test_assert_passed_and_candidate_killed_afterwards() -> None:
    raw = report("assert", exit_code=None, signal_number=9, record={"outcome": "passed"})
    assert verdict_of(raw, ASSERT) == Verdict.PASSED


def test_assert_failed() -> None:
    event = {"type": "AssertionError", "message": "", "traceback": 'File "<tests>", line 1\nAssertionError'}
    raw = report("assert", record={"outcome": "failed", "event": event})
    result = judge(raw, ASSERT, OPTIONS, LIMITS)
    check(result, Verdict.FAILED_TEST, "AssertionError", "")
    assert result.error is not None
    assert result.error.traceback == event["traceback"]


def test_assert_failed_without_details_is_an_assertion_error() -> None:
    raw = report("assert", record={"outcome": "failed"})
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.FAILED_TEST, "AssertionError")


def test_assert_test_code_error_is_a_failed_test() -> None:
    record = {"outcome": "failed", "event": {"type": "TypeError", "message": "not plain data"}}
    check(judge(report("assert", record=record), ASSERT, OPTIONS, LIMITS), Verdict.FAILED_TEST, "TypeError")


def test_assert_candidate_raised() -> None:
    record = {
        "outcome": "candidate_raised",
        "event": {"type": "IndexError", "message": "list index out of range"},
    }
    raw = report("assert", exit_code=0, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "IndexError", "list index out of range")


def test_assert_candidate_raised_at_import() -> None:
    record = {"outcome": "candidate_raised", "event": exception_event("exception", "NameError")}
    raw = report("assert", exit_code=1, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "NameError")


def test_assert_candidate_raised_without_a_type() -> None:
    raw = report("assert", exit_code=1, record={"outcome": "candidate_raised", "event": None})
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 1")


def test_assert_candidate_gone_exit_zero_is_a_failed_test() -> None:
    record = {"outcome": "candidate_gone", "event": {"event": "exited", "code": 0}}
    raw = report("assert", exit_code=0, record=record)
    check(
        judge(raw, ASSERT, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "TestsNotCompleted",
        "the program exited before the tests completed",
    )


def test_assert_candidate_gone_exit_two_is_a_runtime_error() -> None:
    record = {"outcome": "candidate_gone", "event": {"event": "exited", "code": 2}}
    raw = report("assert", exit_code=2, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "SystemExit", "exit code 2")


def test_assert_candidate_gone_by_a_signal() -> None:
    record = {"outcome": "candidate_gone", "event": None}
    raw = report("assert", exit_code=None, signal_number=11, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.RUNTIME_ERROR, "SIGSEGV")
    # SIGKILL is also how the server ends every candidate: not evidence of a crash
    raw = report("assert", exit_code=None, signal_number=9, record=record)
    check(judge(raw, ASSERT, OPTIONS, LIMITS), Verdict.FAILED_TEST, "TestsNotCompleted")


def test_assert_no_record() -> None:
    raw = report("assert", exit_code=0, record=None)
    check(
        judge(raw, ASSERT, OPTIONS, LIMITS),
        Verdict.FAILED_TEST,
        "TestsNotCompleted",
        "the program exited before the tests completed",
    )


def test_assert_ignores_candidate_events_for_the_verdict() -> None:
    # in assert mode only the runner's record decides; a forged 'passed'-looking event does nothing
    raw = report("assert", events=[{"event": "returned", "value": 3}], record={"outcome": "failed"})
    assert verdict_of(raw, ASSERT) == Verdict.FAILED_TEST


# ---- build_job ------------------------------------------------------------------------------------------

SECRET_STDOUT = "EXPECTED-STDOUT-7f3a9c"
SECRET_VALUE = "EXPECTED-VALUE-b81d4e"
SECRET_SOLUTION = "SECRET-SOLUTION-02ce55"


def problem(source: str = "native", **fields: Any) -> Problem:
    return Problem(
        task_id="p1", source=source, statement="Add two numbers.", solutions=[SECRET_SOLUTION], **fields
    )


def test_build_job_stdio() -> None:
    test = TestCase(kind="stdio", stdin="1 2\n", stdout=SECRET_STDOUT)
    job = build_job(problem(hidden_tests=[test]), "print(3)", test, LIMITS)
    assert job == {"mode": "stdio", "program": "print(3)", "limits": LIMITS, "stdin": "1 2\n"}
    text = json.dumps(job)
    assert SECRET_STDOUT not in text
    assert SECRET_SOLUTION not in text


def test_build_job_apps_gets_the_prelude() -> None:
    test = TestCase(kind="stdio", stdin="", stdout=SECRET_STDOUT)
    job = build_job(problem("apps"), "print(3)", test, LIMITS)
    assert job["prelude"] == APPS_PRELUDE
    assert "from typing import *" in APPS_PRELUDE
    assert job["program"] == "print(3)"  # the prelude is separate: line numbers stay right
    call = TestCase(kind="call", args=[1], expected=SECRET_VALUE)
    assert build_job(problem("apps", fn_name="f"), "def f(x): pass", call, LIMITS)["prelude"] == APPS_PRELUDE


@pytest.mark.parametrize("source", ["native", "mbpp", "humaneval"])
def test_build_job_other_sources_have_no_prelude(source: str) -> None:
    test = TestCase(kind="stdio", stdin="", stdout="x")
    assert "prelude" not in build_job(problem(source), "", test, LIMITS)


def test_build_job_call() -> None:
    args = [[1, 2], 2**60, "s", None, 1.5, {"k": [True]}]
    test = TestCase(kind="call", args=args, expected=SECRET_VALUE)
    p = problem("apps", fn_name="solve", hidden_tests=[test])
    job = build_job(p, "def solve(*a): pass", test, LIMITS)
    assert job["mode"] == "call"
    assert job["fn_name"] == "solve"
    assert job["args"] == [
        [1, 2],
        {"$int": str(2**60)},
        "s",
        None,
        1.5,
        {"$dict": [["k", [True]]]},
    ]
    assert job["args"] == values.encode(args)
    assert values.decode(job["args"]) == args
    assert "stdin" not in job and "expected" not in job
    text = json.dumps(job)
    assert SECRET_VALUE not in text
    assert SECRET_SOLUTION not in text


def test_build_job_call_expected_number_is_absent() -> None:
    test = TestCase(kind="call", args=["a"], expected=918273645546372819)
    job = build_job(problem(fn_name="f"), "def f(x): pass", test, LIMITS)
    assert "918273645546372819" not in json.dumps(job)


def test_build_job_call_args_are_framable() -> None:
    test = TestCase(kind="call", args=[float("inf"), float("nan"), 10**40], expected=0)
    job = build_job(problem(fn_name="f"), "def f(*a): pass", test, LIMITS)
    assert job["args"] == [{"$float": "inf"}, {"$float": "nan"}, {"$int": str(10**40)}]
    frame = wire.encode_frame(job)  # no NaN in JSON: it must still be sendable
    assert wire.FrameBuffer().feed(frame) == [job]


def test_build_job_call_without_args() -> None:
    test = TestCase(kind="call", args=[], expected=1)
    assert build_job(problem(fn_name="f"), "", test, LIMITS)["args"] == []


def test_build_job_assert() -> None:
    test = TestCase(kind="assert", code="assert add(1, 2) == 3")
    p = problem("mbpp", setup_code="import math", hidden_tests=[test])
    job = build_job(p, "def add(a, b): return a + b", test, LIMITS)
    assert job == {
        "mode": "assert",
        "program": "def add(a, b): return a + b",
        "limits": LIMITS,
        "setup_code": "import math",
        "test_code": "assert add(1, 2) == 3",
    }


def test_build_job_never_carries_other_tests() -> None:
    hidden = [TestCase(kind="stdio", stdin=f"in{i}", stdout=f"{SECRET_STDOUT}-{i}") for i in range(3)]
    example = [TestCase(kind="stdio", stdin="ex", stdout=f"{SECRET_STDOUT}-ex")]
    p = problem("apps", hidden_tests=hidden, example_tests=example)
    for test in p.tests("all"):
        text = json.dumps(build_job(p, "print(1)", test, LIMITS))
        assert SECRET_STDOUT not in text
        assert SECRET_SOLUTION not in text
