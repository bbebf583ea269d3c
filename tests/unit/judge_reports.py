"""Synthetic raw harness reports for the executor/judge.py tests, and helpers to judge them.

``report()`` builds a raw report shaped like ``executor/harness/job.py`` ``Job.result()`` plus the
``oom_killed`` and ``contamination`` keys that ``executor/harness/server.py`` ``Server.run`` adds.
"""

from __future__ import annotations

import base64
from typing import Any

from coderl.outcomes import Verdict
from executor.config import LimitsConfig
from executor.harness import values
from executor.judge import Judgement, judge
from problems import CompareOptions, TestCase

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
    oom_first: bool = False,
    protocol_violation: bool = False,
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
        "oom_first": oom_first,
        "protocol_violation": protocol_violation,
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


def judged(raw: Any, test: TestCase = STDIO, limits: dict[str, Any] | None = None) -> Judgement:
    """``judge`` with the default compare options, and the default limits unless given."""
    return judge(raw, test, OPTIONS, LIMITS if limits is None else limits)


def verdict_of(raw: Any, test: TestCase = STDIO, limits: dict[str, Any] | None = None) -> Verdict:
    return judged(raw, test, limits).outcome.verdict


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


def check_times(judgement: Judgement, time_s: float, wall_s: float) -> None:
    """The CPU and wall time the judgement reports."""
    assert judgement.outcome.time_s == time_s
    assert judgement.outcome.wall_s == wall_s
