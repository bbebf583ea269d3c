"""executor/harness/protocol.py: the typed messages round-trip through wire frames, and every
outcome, limit and event the harness can report is mapped to a verdict by executor/judge.py."""

from __future__ import annotations

import dataclasses
import json
import signal
from typing import Any

import pytest
from judge_reports import ASSERT, CALL, COMPILE_EVENT, LIMITS, STDIO, exception_event, judged, report

from coderl.outcomes import Verdict
from executor.harness import values, wire
from executor.harness.job import Job
from executor.harness.protocol import (
    REQUIRED_ISOLATION,
    TERMINAL_EVENTS,
    CallOp,
    CallRequest,
    CandidateJob,
    ChildExit,
    Event,
    EventKey,
    InfoKey,
    JobLimits,
    KilledFor,
    LimitKey,
    Mode,
    Op,
    Outcome,
    RecordKey,
    RequestKey,
    ResultKey,
    RunnerJob,
    RunnerRecord,
    RunRequest,
    StopReason,
    ZygoteOp,
    ZygoteReply,
    ZygoteRequest,
)
from executor.judge import build_job
from problems import Problem, TestCase


def through_wire(message: dict[str, Any]) -> dict[str, Any]:
    """What the peer decodes: the frame's bytes parsed back, strictly."""
    frame = wire.encode_frame(message)
    return wire.decode_body(frame[wire.HEADER.size :])


# ---- every outcome, limit and event the harness reports has a verdict ----------------------------------

GONE_EXITED_3 = {EventKey.EVENT: Event.EXITED, EventKey.CODE: 3}
GONE_EXITED_0 = {EventKey.EVENT: Event.EXITED, EventKey.CODE: 0}
ASSERT_FAILED = {EventKey.TYPE: "AssertionError", EventKey.MESSAGE: "", EventKey.TRACEBACK: "assert"}
OUTCOME_CASES = [
    (Outcome.PASSED, None, Verdict.PASSED),
    (Outcome.FAILED, ASSERT_FAILED, Verdict.FAILED_TEST),
    (Outcome.CANDIDATE_RAISED, exception_event("raised"), Verdict.RUNTIME_ERROR),
    (Outcome.CANDIDATE_GONE, GONE_EXITED_3, Verdict.RUNTIME_ERROR),
    (Outcome.CANDIDATE_GONE, GONE_EXITED_0, Verdict.FAILED_TEST),
    (Outcome.CANDIDATE_GONE, None, Verdict.FAILED_TEST),
    (Outcome.COMPILE_ERROR, COMPILE_EVENT, Verdict.COMPILE_ERROR),
    (Outcome.HARNESS_ERROR, None, Verdict.SANDBOX_ERROR),
]


def test_the_outcome_cases_cover_every_outcome() -> None:
    assert {outcome for outcome, _, _ in OUTCOME_CASES} == set(Outcome)


@pytest.mark.parametrize(("outcome", "event", "verdict"), OUTCOME_CASES)
def test_every_outcome_of_the_runner_is_judged(
    outcome: Outcome, event: dict[str, Any] | None, verdict: Verdict
) -> None:
    message = "runner crashed" if outcome == Outcome.HARNESS_ERROR else None
    record = RunnerRecord(outcome, event=event, message=message, seq=1).to_dict()
    raw = through_wire(report("assert", record=record))
    assert judged(raw, ASSERT).outcome.verdict == verdict


@pytest.mark.parametrize(
    ("killed_for", "verdict", "error_type"),
    [
        (KilledFor.CPU, Verdict.TIMEOUT, "Timeout"),
        (KilledFor.WALL, Verdict.TIMEOUT, "Timeout"),
        (KilledFor.OUTPUT, Verdict.OUTPUT_LIMIT, "OutputLimit"),
    ],
)
@pytest.mark.parametrize("test", [STDIO, CALL, ASSERT], ids=["stdio", "call", "assert"])
def test_every_kill_of_the_server_is_judged(
    killed_for: KilledFor, verdict: Verdict, error_type: str, test: TestCase
) -> None:
    raw = through_wire(
        report(
            test.kind.value,
            exit_code=None,
            signal_number=int(signal.SIGKILL),
            killed_for=killed_for,
            stop_reason=StopReason(killed_for),
            cpu_s=0.1,
        )
    )
    result = judged(raw, test)
    assert result.outcome.verdict == verdict
    assert result.error is not None and result.error.type == error_type
    if killed_for == KilledFor.WALL:
        assert result.error.message == f"wall-clock limit of {LIMITS[LimitKey.WALL_S]} s exceeded"


def test_the_kill_cases_cover_every_limit() -> None:
    assert set(KilledFor) == {KilledFor.CPU, KilledFor.WALL, KilledFor.OUTPUT}
    assert {StopReason(limit) for limit in KilledFor} <= set(StopReason)


EVENT_CASES = [
    (Event.COMPILE_ERROR, COMPILE_EVENT, 0, Verdict.COMPILE_ERROR),
    (Event.EXCEPTION, exception_event("exception"), 1, Verdict.RUNTIME_ERROR),
    (Event.READY, {EventKey.CALLABLES: ["add"], EventKey.VALUES: []}, 0, Verdict.FAILED_TEST),
    (Event.RETURNED, {EventKey.VALUE: values.encode(3)}, 0, Verdict.PASSED),
    (Event.RAISED, exception_event("raised"), 0, Verdict.RUNTIME_ERROR),
    (Event.EXITED, {EventKey.CODE: 2}, 2, Verdict.RUNTIME_ERROR),
]


def test_the_event_cases_cover_every_event() -> None:
    assert {kind for kind, _, _, _ in EVENT_CASES} == set(Event)
    assert set(Event) - TERMINAL_EVENTS == {Event.READY}


@pytest.mark.parametrize(("kind", "fields", "exit_code", "verdict"), EVENT_CASES)
def test_every_event_of_a_call_is_judged(
    kind: Event, fields: dict[str, Any], exit_code: int, verdict: Verdict
) -> None:
    event = {**fields, EventKey.EVENT: kind}
    raw = through_wire(report("call", exit_code=exit_code, events=[event]))
    assert judged(raw, CALL).outcome.verdict == verdict


# ---- the frames: keys, round trips, lenient parsing ----------------------------------------------------


def field_names(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def test_message_fields_are_the_keys_of_their_frames() -> None:
    assert field_names(RunRequest) == set(RequestKey) - {RequestKey.OP}
    assert field_names(JobLimits) == set(LimitKey)
    assert field_names(RunnerRecord) == set(RecordKey)
    assert set(REQUIRED_ISOLATION) <= set(InfoKey)


def test_a_job_result_has_every_result_key() -> None:
    job = Job(RunRequest(), "/nonexistent", 1, zygote=None, runner=None)  # type: ignore[arg-type]
    try:
        result = job.result()
    finally:
        job.close_candidate_ends()
        job.close_all()
    assert set(result) | {ResultKey.OOM_KILLED, ResultKey.CONTAMINATION} == set(ResultKey)
    assert set(report()) == set(ResultKey)  # the judge tests' synthetic reports have the same shape
    json.dumps(result)


MESSAGES = [
    RunRequest(mode=Mode.CALL, program="def f(x): return x", limits={"cpu_s": 1.0}, fn_name="f", args=[1]),
    RunRequest(mode=Mode.ASSERT, program="", setup_code="import math", test_code="assert f(1) == 1"),
    CandidateJob(Mode.STDIO, "print(1)", None, "__main__"),
    CandidateJob(Mode.CALL, "def f(): pass", "import sys", "solution"),
    CallRequest(CallOp.CALL, "f", [1, {"$int": "9" * 20}], values.encode({"k": 2})),
    CallRequest(CallOp.GET, "TABLE"),
    RunnerJob(7, "x = 1", "assert f(x) == 1", "f", 1 << 30),
    RunnerJob(8, "", "", None, 0),
    ZygoteRequest(ZygoteOp.RUN, JobLimits().to_dict(), "/tmp/work"),
    ZygoteRequest(ZygoteOp.JANITOR),
    ChildExit(1234, 256, 0.25, 10_000),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_through_a_frame(message: Any) -> None:
    assert type(message).from_dict(through_wire(message.to_dict())) == message


def test_job_limits_round_trip_and_fill_defaults() -> None:
    limits = JobLimits(cpu_s=1.5, wall_s=4.0, memory_bytes=1 << 20, output_bytes=100)
    assert JobLimits.from_dict(through_wire(limits.to_dict())) == limits
    assert JobLimits.from_dict(None) == JobLimits()
    assert JobLimits.from_dict({LimitKey.CPU_S: 2}).wall_s == 5.0  # 2 * cpu + 1, as the server always had
    assert JobLimits.from_dict(LIMITS) == JobLimits(**LIMITS)  # the host's limits name every field it sets


def test_runner_record_leaves_out_what_it_does_not_have() -> None:
    assert RunnerRecord(Outcome.PASSED, seq=3).to_dict() == {RecordKey.OUTCOME: "passed", RecordKey.SEQ: 3}
    frame = through_wire(RunnerRecord(Outcome.HARNESS_ERROR, message="boom", seq=1).to_dict())
    assert frame == {"outcome": "harness_error", "message": "boom", "seq": 1}


def test_child_exit_and_replies_as_the_zygote_sends_them() -> None:
    frame = through_wire(ChildExit(5, 0, 0.5, 99).to_dict())
    assert frame == {"exited": 5, "status": 0, "cpu_s": 0.5, "max_rss_kb": 99}
    assert ChildExit.from_dict({ZygoteReply.PID: 5}) is None
    assert ChildExit.from_dict(frame) == ChildExit(5, 0, 0.5, 99)


def test_run_request_parses_leniently() -> None:
    assert RunRequest.from_dict({}) == RunRequest()
    odd = RunRequest.from_dict({RequestKey.MODE: "weird", RequestKey.FN_NAME: 3, RequestKey.LIMITS: [1]})
    assert (odd.mode, odd.fn_name, odd.limits) == ("weird", None, {})
    assert CallRequest.from_dict({}).op == CallOp.CALL
    assert ZygoteRequest.from_dict({"op": "janitor"}).op == ZygoteOp.JANITOR


def problem(**fields: Any) -> Problem:
    return Problem(task_id="p", source="apps", statement="s", **fields)


@pytest.mark.parametrize(
    "test",
    [
        TestCase(kind="stdio", stdin="1\n", stdout="2\n"),
        TestCase(kind="call", args=[1, (2, 3)], expected=4),
        TestCase(kind="assert", code="assert f(1) == 2"),
    ],
    ids=["stdio", "call", "assert"],
)
def test_build_job_is_a_run_request(test: TestCase) -> None:
    job = build_job(problem(fn_name="f", setup_code="import math"), "def f(x): return x", test, LIMITS)
    frame = through_wire({RequestKey.OP: "run", **job})
    assert frame[RequestKey.MODE] == test.kind.value and Mode(frame[RequestKey.MODE]) == test.kind.value
    request = RunRequest.from_dict(frame)
    assert request.to_dict().items() >= job.items()
    assert JobLimits.from_dict(request.limits) == JobLimits(**LIMITS)


def test_names_are_their_strings_on_the_wire() -> None:
    assert json.dumps({RequestKey.OP: Op.RUN}) == '{"op": "run"}'
    assert through_wire({EventKey.EVENT: Event.RETURNED})["event"] == Event.RETURNED
    assert StopReason.CPU == KilledFor.CPU == "cpu"
