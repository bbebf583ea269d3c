"""Judging: build a harness job for one test, and turn the raw harness report into a verdict.

The raw report comes from inside the sandbox and is only *evidence*: exit status, signal,
output bytes, the candidate's own events and the runner's record. Everything the verdict
depends on is decided here, on the host, with expected outputs that never entered the sandbox.
Precedence, first match wins:

    harness fault / unreadable report          -> SANDBOX_ERROR (retried, never scored)
    compile error before any code ran          -> COMPILE_ERROR
    output cap exceeded                        -> OUTPUT_LIMIT
    memory limit reached or OOM kill before a
      CPU or wall-clock kill                   -> MEMORY_LIMIT
    CPU or wall limit (incl. SIGXCPU), or the
      job's CPU (every process of it) past the
      limit even though it exited normally     -> TIMEOUT
    OOM kill or MemoryError                    -> MEMORY_LIMIT
    killed by a signal, non-zero exit, raised  -> RUNTIME_ERROR
    stdio: output differs (compare.py)         -> FAILED_TEST
    call: value differs or is not plain data,
          or the program corrupted its channel -> FAILED_TEST
    assert: an assert or the test code failed,
            or the program exited before the tests completed -> FAILED_TEST
    otherwise                                  -> PASSED
"""

from __future__ import annotations

import base64
import signal
from dataclasses import dataclass, replace
from typing import Any

from coderl.execution import ErrorInfo, TestOutcome
from coderl.outcomes import Verdict
from coderl.problem import CompareOptions, Problem, TestCase, TestKind
from executor.harness import values
from executor.harness.protocol import (
    Event,
    EventKey,
    KilledFor,
    LimitKey,
    Outcome,
    RecordKey,
    ResultKey,
    RunRequest,
)

from . import plain
from .compare import compare_stdout, compare_value

MESSAGE_LIMIT = 2000

# APPS's harness runs every program after this import header; LeetCode-style solutions rely on
# it (``List[int]`` without importing typing). Run as a prelude so line numbers stay right. Its
# ``import numpy as np`` becomes a stand-in that imports numpy the first time the program uses
# ``np`` (about 70 ms), so programs that never touch it do not pay for it.
APPS_PRELUDE = """\
import sys, time, itertools, collections, math, heapq, bisect, random, string, re, fractions, functools
from itertools import accumulate, product, permutations, combinations
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
from heapq import *
from typing import *
class _NumpyOnFirstUse:
    def __getattr__(self, name):
        try:
            import numpy
        except ImportError:
            raise NameError("name 'np' is not defined") from None
        globals()["np"] = numpy
        return getattr(numpy, name)
np = _NumpyOnFirstUse()
"""


def build_job(problem: Problem, program: str, test: TestCase, limits: dict[str, Any]) -> dict[str, Any]:
    """The harness job for one test; expected outputs are deliberately left out."""
    prelude = APPS_PRELUDE if problem.source == "apps" else None
    request = RunRequest(mode=test.kind.value, program=program, limits=limits, prelude=prelude)
    if test.kind == TestKind.STDIO:
        request = replace(request, stdin=test.stdin)
    elif test.kind == TestKind.CALL:
        request = replace(request, fn_name=problem.fn_name, args=values.encode(list(test.args or [])))
    else:
        request = replace(request, setup_code=problem.setup_code, test_code=test.code)
    return request.to_dict()


@dataclass(frozen=True)
class Judgement:
    outcome: TestOutcome
    error: ErrorInfo | None = None


def _judgement(
    verdict: Verdict, raw: dict[str, Any], error_type: str = "", message: str = "", trace: str = ""
) -> Judgement:
    outcome = TestOutcome(
        verdict=verdict,
        time_s=float(raw.get(ResultKey.CPU_S) or 0.0),
        wall_s=float(raw.get(ResultKey.WALL_S) or 0.0),
    )
    if verdict == Verdict.PASSED:
        return Judgement(outcome)
    error = ErrorInfo(
        type=error_type or verdict.value, message=message[:MESSAGE_LIMIT], traceback=trace[-MESSAGE_LIMIT:]
    )
    return Judgement(outcome, error)


def _first_event(raw: dict[str, Any], *kinds: str) -> dict[str, Any] | None:
    for event in raw.get(ResultKey.EVENTS) or []:
        if isinstance(event, dict) and event.get(EventKey.EVENT) in kinds:
            return event
    return None


def _text(encoded: Any) -> str:
    try:
        return base64.b64decode(str(encoded or "")).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def judge(raw: dict[str, Any], test: TestCase, options: CompareOptions, limits: dict[str, Any]) -> Judgement:
    """Verdict of one test run; see the module docstring for the precedence."""
    if not isinstance(raw, dict) or ResultKey.MODE not in raw:
        return _judgement(Verdict.SANDBOX_ERROR, {}, "SandboxError", "unreadable harness report")
    record = raw.get(ResultKey.RECORD) if isinstance(raw.get(ResultKey.RECORD), dict) else None
    record_event = (record or {}).get(RecordKey.EVENT) or {}
    if record and record.get(RecordKey.OUTCOME) == Outcome.HARNESS_ERROR:
        return _judgement(Verdict.SANDBOX_ERROR, raw, "SandboxError", str(record.get(RecordKey.MESSAGE, "")))
    compile_error = _first_event(raw, Event.COMPILE_ERROR)
    if compile_error is None and record and record.get(RecordKey.OUTCOME) == Outcome.COMPILE_ERROR:
        compile_error = record_event
    if compile_error:
        return _judgement(
            Verdict.COMPILE_ERROR,
            raw,
            str(compile_error.get(EventKey.TYPE, "SyntaxError")),
            str(compile_error.get(EventKey.MESSAGE, "")),
            str(compile_error.get(EventKey.TRACEBACK, "")),
        )
    limit = _limit_verdict(raw, limits, record_event)
    if limit is not None:
        return limit
    if test.kind == TestKind.STDIO:
        return _judge_stdio(raw, test, options)
    if test.kind == TestKind.CALL:
        return _judge_call(raw, test, options)
    return _judge_assert(raw, record)


def _limit_verdict(
    raw: dict[str, Any], limits: dict[str, Any], record_event: dict[str, Any]
) -> Judgement | None:
    killed_for = raw.get(ResultKey.KILLED_FOR)
    if killed_for == KilledFor.OUTPUT:
        cap = limits.get(LimitKey.OUTPUT_BYTES, 0)
        return _judgement(Verdict.OUTPUT_LIMIT, raw, "OutputLimit", f"output exceeded {cap} bytes")
    if raw.get(ResultKey.OOM_FIRST):  # out of memory first (then reclaim or thrashing used up the time)
        return _memory_limit(raw, limits)
    cpu_limit = float(limits.get(LimitKey.CPU_S, 0) or 0)
    cpu_s = float(raw.get(ResultKey.CPU_S) or 0)
    over_cpu = cpu_limit > 0 and (
        cpu_s > cpu_limit or (bool(raw.get(ResultKey.SIGNAL)) and cpu_s >= cpu_limit)
    )
    if (
        killed_for in (KilledFor.CPU, KilledFor.WALL)
        or raw.get(ResultKey.SIGNAL) == signal.SIGXCPU
        or over_cpu
    ):
        which = "wall-clock" if killed_for == KilledFor.WALL else "CPU"
        limit_s = limits.get(LimitKey.WALL_S) if killed_for == KilledFor.WALL else cpu_limit
        return _judgement(Verdict.TIMEOUT, raw, "Timeout", f"{which} limit of {limit_s} s exceeded")
    raised = _first_event(raw, Event.EXCEPTION, Event.RAISED) or record_event
    if raw.get(ResultKey.OOM_KILLED) or (
        isinstance(raised, dict) and raised.get(EventKey.TYPE) == "MemoryError"
    ):
        return _memory_limit(raw, limits)
    return None


def _memory_limit(raw: dict[str, Any], limits: dict[str, Any]) -> Judgement:
    limit_mb = int(limits.get(LimitKey.MEMORY_BYTES, 0)) >> 20
    return _judgement(Verdict.MEMORY_LIMIT, raw, "MemoryLimit", f"memory limit of {limit_mb} MiB exceeded")


def _runtime_error(raw: dict[str, Any], event: dict[str, Any] | None) -> Judgement:
    if event and event.get(EventKey.TYPE):
        return _judgement(
            Verdict.RUNTIME_ERROR,
            raw,
            str(event[EventKey.TYPE]),
            str(event.get(EventKey.MESSAGE, "")),
            str(event.get(EventKey.TRACEBACK, "")),
        )
    if raw.get(ResultKey.SIGNAL):
        return _judgement(
            Verdict.RUNTIME_ERROR,
            raw,
            _signal_name(int(raw[ResultKey.SIGNAL])),
            f"killed by {_signal_name(int(raw[ResultKey.SIGNAL]))}",
            _text(raw.get(ResultKey.STDERR))[-MESSAGE_LIMIT:],
        )
    code = raw.get(ResultKey.EXIT_CODE)
    return _judgement(
        Verdict.RUNTIME_ERROR, raw, "NonZeroExit", f"exit code {code}", _text(raw.get(ResultKey.STDERR))
    )


def _judge_stdio(raw: dict[str, Any], test: TestCase, options: CompareOptions) -> Judgement:
    if raw.get(ResultKey.SIGNAL) is None and raw.get(ResultKey.EXIT_CODE) is None:
        return _judgement(Verdict.SANDBOX_ERROR, raw, "SandboxError", "the program's exit status was lost")
    if raw.get(ResultKey.SIGNAL) or raw.get(ResultKey.EXIT_CODE) != 0:
        return _runtime_error(raw, _first_event(raw, Event.EXCEPTION))
    comparison = compare_stdout(_text(raw.get(ResultKey.STDOUT)), test.stdout or "", options)
    if comparison.equal:
        return _judgement(Verdict.PASSED, raw)
    return _judgement(Verdict.FAILED_TEST, raw, "WrongAnswer", comparison.reason)


def _judge_call(raw: dict[str, Any], test: TestCase, options: CompareOptions) -> Judgement:
    event = _first_event(raw, Event.RETURNED, Event.RAISED, Event.EXITED, Event.EXCEPTION)
    if event is None and raw.get(ResultKey.PROTOCOL_VIOLATION):
        return _judgement(
            Verdict.FAILED_TEST, raw, "ProtocolViolation", "the program corrupted its result channel"
        )
    if event is None and raw.get(ResultKey.SIGNAL) is None and raw.get(ResultKey.EXIT_CODE) is None:
        return _judgement(Verdict.SANDBOX_ERROR, raw, "SandboxError", "the program's exit status was lost")
    if event is None:
        return (
            _runtime_error(raw, None)
            if raw.get(ResultKey.SIGNAL) or raw.get(ResultKey.EXIT_CODE)
            else _judgement(
                Verdict.FAILED_TEST, raw, "NoAnswer", "the program ended without returning a value"
            )
        )
    kind = event.get(EventKey.EVENT)
    if kind in (Event.RAISED, Event.EXCEPTION):
        return _runtime_error(raw, event)
    if kind == Event.EXITED:
        if event.get(EventKey.CODE) == 0:
            return _judgement(Verdict.FAILED_TEST, raw, "NoAnswer", "the program exited instead of returning")
        return _judgement(Verdict.RUNTIME_ERROR, raw, "SystemExit", f"exit code {event.get(EventKey.CODE)}")
    try:
        actual = plain.decode_untrusted(event.get(EventKey.VALUE))
    except (ValueError, TypeError) as exc:
        return _judgement(Verdict.FAILED_TEST, raw, "WrongAnswer", f"unreadable return value: {exc}")
    if isinstance(actual, plain.Unsupported):
        return _judgement(
            Verdict.FAILED_TEST, raw, "WrongAnswer", f"returned a {actual.type_name}, not plain data"
        )
    comparison = compare_value(actual, test.expected, options)
    if comparison.equal:
        return _judgement(Verdict.PASSED, raw)
    return _judgement(Verdict.FAILED_TEST, raw, "WrongAnswer", comparison.reason)


def _judge_assert(raw: dict[str, Any], record: dict[str, Any] | None) -> Judgement:
    outcome = (record or {}).get(RecordKey.OUTCOME)
    event = (record or {}).get(RecordKey.EVENT) or {}
    if outcome == Outcome.PASSED:
        return _judgement(Verdict.PASSED, raw)
    if outcome == Outcome.FAILED:
        return _judgement(
            Verdict.FAILED_TEST,
            raw,
            str(event.get(EventKey.TYPE, "AssertionError")),
            str(event.get(EventKey.MESSAGE, "")),
            str(event.get(EventKey.TRACEBACK, "")),
        )
    if outcome == Outcome.CANDIDATE_RAISED:
        return _runtime_error(raw, event if event.get(EventKey.TYPE) else None)
    if (
        outcome == Outcome.CANDIDATE_GONE
        and event.get(EventKey.EVENT) == Event.EXITED
        and event.get(EventKey.CODE) not in (0, None)
    ):
        return _judgement(Verdict.RUNTIME_ERROR, raw, "SystemExit", f"exit code {event.get(EventKey.CODE)}")
    if raw.get(ResultKey.SIGNAL) and raw.get(ResultKey.SIGNAL) != signal.SIGKILL:
        return _runtime_error(raw, None)
    return _judgement(
        Verdict.FAILED_TEST, raw, "TestsNotCompleted", "the program exited before the tests completed"
    )
