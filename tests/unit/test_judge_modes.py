"""executor/judge.py: the verdicts of each test mode (stdio, call, assert) over synthetic raw
harness reports."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from judge_reports import ASSERT, CALL, READY, check, exception_event, judged, report, returned, verdict_of

from coderl.outcomes import Verdict
from executor.harness import values
from executor.judge import MESSAGE_LIMIT
from problems import TestCase

# ---- stdio ----------------------------------------------------------------------------------------------


def test_stdio_passed() -> None:
    raw = report(stdout="3\n", cpu_s=0.25, wall_s=0.5)
    result = judged(raw)
    check(result, Verdict.PASSED)
    assert result.outcome.time_s == 0.25
    assert result.outcome.wall_s == 0.5


def test_stdio_passed_modulo_trailing_whitespace() -> None:
    assert verdict_of(report(stdout="3   \r\n\n\n")) == Verdict.PASSED
    assert verdict_of(report(stdout="3")) == Verdict.PASSED


def test_stdio_wrong_output_is_a_failed_test_with_a_reason() -> None:
    check(
        judged(report(stdout="4\n")),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "line 1, token 1: expected '3', got '4'",
    )
    check(judged(report(stdout="")), Verdict.FAILED_TEST, "WrongAnswer", "expected 1 line, got 0")
    check(judged(report(stdout="3\n3\n")), Verdict.FAILED_TEST, "WrongAnswer", "expected 1 line, got 2")


def test_stdio_non_utf8_output_is_compared_not_crashed() -> None:
    assert verdict_of(report(stdout=b"\xff\xfe\n")) == Verdict.FAILED_TEST


def test_stdio_killed_by_a_signal() -> None:
    raw = report(exit_code=None, signal_number=int(signal.SIGSEGV), stderr="Fatal Python error")
    result = judged(raw)
    check(result, Verdict.RUNTIME_ERROR, "SIGSEGV", "killed by SIGSEGV")
    assert result.error is not None
    assert result.error.traceback == "Fatal Python error"


def test_stdio_killed_by_an_unknown_signal_number() -> None:
    raw = report(exit_code=None, signal_number=200)
    check(judged(raw), Verdict.RUNTIME_ERROR, "signal 200", "killed by signal 200")


def test_stdio_exception_event_gives_the_exception_type() -> None:
    event = exception_event("exception", "ZeroDivisionError")
    raw = report(exit_code=1, events=[event], stderr="Traceback ...")
    result = judged(raw)
    check(result, Verdict.RUNTIME_ERROR, "ZeroDivisionError", "ZeroDivisionError happened")
    assert result.error is not None
    assert result.error.traceback == event["traceback"]


def test_stdio_non_zero_exit_without_an_event() -> None:
    raw = report(exit_code=3, stderr="bye\n")
    result = judged(raw)
    check(result, Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 3")
    assert result.error is not None
    assert result.error.traceback == "bye\n"


def test_stdio_right_answer_then_non_zero_exit_is_a_runtime_error() -> None:
    raw = report(exit_code=1, stdout="3\n", events=[{"event": "exited", "code": 1}])
    check(judged(raw), Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 1")
    raw = report(exit_code=1, stdout="3\n", events=[exception_event("exception", "IndexError")])
    check(judged(raw), Verdict.RUNTIME_ERROR, "IndexError")


def test_stdio_right_answer_then_exit_zero_passes() -> None:
    raw = report(exit_code=0, stdout="3\n", events=[{"event": "exited", "code": 0}])
    assert verdict_of(raw) == Verdict.PASSED


def test_stdio_exception_event_ignored_when_the_exit_is_clean() -> None:
    # evidence is weighed by the exit status first: a clean exit is compared
    raw = report(exit_code=0, stdout="3\n", events=[exception_event()])
    assert verdict_of(raw) == Verdict.PASSED


def test_stdio_messages_are_capped() -> None:
    event = exception_event(message="m" * 5000, traceback="t" * 4000 + "END")
    result = judged(report(exit_code=1, events=[event]))
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
    check(judged(raw, CALL), Verdict.PASSED)


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
    check(judged(raw, CALL), Verdict.FAILED_TEST, "WrongAnswer", "expected 3, got 4")
    check(
        judged(report("call", events=returned("3")), CALL),
        Verdict.FAILED_TEST,
        "WrongAnswer",
        "expected int, got str",
    )
    assert verdict_of(report("call", events=returned(True)), TestCase(kind="call", args=[], expected=1)) == (
        Verdict.FAILED_TEST
    )


def test_call_returned_unsupported() -> None:
    raw = report("call", events=[READY, {"event": "returned", "value": {"$unsupported": "AlwaysEqual"}}])
    check(judged(raw, CALL), Verdict.FAILED_TEST, "WrongAnswer", "returned a AlwaysEqual, not plain data")


def test_call_returned_unsupported_inside_a_list() -> None:
    test = TestCase(kind="call", args=[], expected=[3])
    raw = report("call", events=[READY, {"event": "returned", "value": [{"$unsupported": "Weird"}]}])
    check(judged(raw, test), Verdict.FAILED_TEST, "WrongAnswer")


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
    result = judged(raw, CALL)
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
    check(judged(raw, CALL), Verdict.RUNTIME_ERROR, "KeyError", "KeyError happened")


def test_call_raised_at_import() -> None:
    raw = report("call", exit_code=1, events=[exception_event("exception", "NameError")])
    check(judged(raw, CALL), Verdict.RUNTIME_ERROR, "NameError")


def test_call_exited_zero_is_no_answer() -> None:
    raw = report("call", exit_code=0, events=[READY, {"event": "exited", "code": 0}])
    check(judged(raw, CALL), Verdict.FAILED_TEST, "NoAnswer", "the program exited instead of returning")


def test_call_exited_non_zero_is_a_runtime_error() -> None:
    raw = report("call", exit_code=3, events=[READY, {"event": "exited", "code": 3}])
    check(judged(raw, CALL), Verdict.RUNTIME_ERROR, "SystemExit", "exit code 3")


def test_call_first_terminal_event_counts() -> None:
    events = [READY, {"event": "returned", "value": 3}, exception_event("raised", "ValueError")]
    assert verdict_of(report("call", events=events), CALL) == Verdict.PASSED
    events = [READY, exception_event("raised", "ValueError"), {"event": "returned", "value": 3}]
    assert verdict_of(report("call", events=events), CALL) == Verdict.RUNTIME_ERROR


def test_call_no_event_clean_exit_is_no_answer() -> None:
    raw = report("call", exit_code=0, events=[READY])
    check(judged(raw, CALL), Verdict.FAILED_TEST, "NoAnswer", "the program ended without returning a value")
    assert verdict_of(report("call", exit_code=0, events=[]), CALL) == Verdict.FAILED_TEST


def test_call_no_event_non_zero_exit_or_signal_is_a_runtime_error() -> None:
    check(
        judged(report("call", exit_code=2, events=[READY]), CALL),
        Verdict.RUNTIME_ERROR,
        "NonZeroExit",
        "exit code 2",
    )
    check(
        judged(report("call", exit_code=None, signal_number=11), CALL),
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
    check(judged(raw, ASSERT), Verdict.PASSED)


def test_assert_passed_and_candidate_killed_afterwards() -> None:
    raw = report("assert", exit_code=None, signal_number=9, record={"outcome": "passed"})
    assert verdict_of(raw, ASSERT) == Verdict.PASSED


def test_assert_failed() -> None:
    event = {"type": "AssertionError", "message": "", "traceback": 'File "<tests>", line 1\nAssertionError'}
    raw = report("assert", record={"outcome": "failed", "event": event})
    result = judged(raw, ASSERT)
    check(result, Verdict.FAILED_TEST, "AssertionError", "")
    assert result.error is not None
    assert result.error.traceback == event["traceback"]


def test_assert_failed_without_details_is_an_assertion_error() -> None:
    raw = report("assert", record={"outcome": "failed"})
    check(judged(raw, ASSERT), Verdict.FAILED_TEST, "AssertionError")


def test_assert_test_code_error_is_a_failed_test() -> None:
    record = {"outcome": "failed", "event": {"type": "TypeError", "message": "not plain data"}}
    check(judged(report("assert", record=record), ASSERT), Verdict.FAILED_TEST, "TypeError")


def test_assert_candidate_raised() -> None:
    record = {
        "outcome": "candidate_raised",
        "event": {"type": "IndexError", "message": "list index out of range"},
    }
    raw = report("assert", exit_code=0, record=record)
    check(judged(raw, ASSERT), Verdict.RUNTIME_ERROR, "IndexError", "list index out of range")


def test_assert_candidate_raised_at_import() -> None:
    record = {"outcome": "candidate_raised", "event": exception_event("exception", "NameError")}
    raw = report("assert", exit_code=1, record=record)
    check(judged(raw, ASSERT), Verdict.RUNTIME_ERROR, "NameError")


def test_assert_candidate_raised_without_a_type() -> None:
    raw = report("assert", exit_code=1, record={"outcome": "candidate_raised", "event": None})
    check(judged(raw, ASSERT), Verdict.RUNTIME_ERROR, "NonZeroExit", "exit code 1")


def test_assert_candidate_gone_exit_zero_is_a_failed_test() -> None:
    record = {"outcome": "candidate_gone", "event": {"event": "exited", "code": 0}}
    raw = report("assert", exit_code=0, record=record)
    check(
        judged(raw, ASSERT),
        Verdict.FAILED_TEST,
        "TestsNotCompleted",
        "the program exited before the tests completed",
    )


def test_assert_candidate_gone_exit_two_is_a_runtime_error() -> None:
    record = {"outcome": "candidate_gone", "event": {"event": "exited", "code": 2}}
    raw = report("assert", exit_code=2, record=record)
    check(judged(raw, ASSERT), Verdict.RUNTIME_ERROR, "SystemExit", "exit code 2")


def test_assert_candidate_gone_by_a_signal() -> None:
    record = {"outcome": "candidate_gone", "event": None}
    raw = report("assert", exit_code=None, signal_number=11, record=record)
    check(judged(raw, ASSERT), Verdict.RUNTIME_ERROR, "SIGSEGV")
    # SIGKILL is also how the server ends every candidate: not evidence of a crash
    raw = report("assert", exit_code=None, signal_number=9, record=record)
    check(judged(raw, ASSERT), Verdict.FAILED_TEST, "TestsNotCompleted")


def test_assert_no_record() -> None:
    raw = report("assert", exit_code=0, record=None)
    check(
        judged(raw, ASSERT),
        Verdict.FAILED_TEST,
        "TestsNotCompleted",
        "the program exited before the tests completed",
    )


def test_assert_ignores_candidate_events_for_the_verdict() -> None:
    # in assert mode only the runner's record decides; a forged 'passed'-looking event does nothing
    raw = report("assert", events=[{"event": "returned", "value": 3}], record={"outcome": "failed"})
    assert verdict_of(raw, ASSERT) == Verdict.FAILED_TEST
