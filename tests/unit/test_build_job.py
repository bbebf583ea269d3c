"""executor/judge.py build_job: the job sent into the sandbox carries the test's input and
never the expected output, the reference solution or any other test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from judge_reports import LIMITS

from executor.harness import values, wire
from executor.judge import APPS_PRELUDE, build_job
from problems import Problem, TestCase

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
