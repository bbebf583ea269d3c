"""``coderl execute``: sample parsing, result lines, the summary, and an end-to-end run on the
process backend (the real executor, no Docker)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

import coderl
from coderl.cli import COMMANDS, main
from coderl.execution import ErrorInfo, ExecutionResult, TestOutcome
from coderl.outcomes import Verdict
from executor import cli as execute_cli
from executor.cli import (
    Sample,
    SampleFormatError,
    format_summary,
    parse_samples,
    read_samples,
    result_record,
    summarize,
)
from executor.sandbox.connection import SandboxFault
from problems import Problem, load_problems_by_id

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HUMANEVAL = FIXTURES / "humaneval_sample.jsonl.gz"
VERDICT_NAMES = [v.value for v in Verdict]


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    return load_problems_by_id(HUMANEVAL)


def completion(problem: Problem) -> str:
    """The canonical solution as a HumanEval completion (the program minus the prompt)."""
    return problem.solutions[0][len(problem.completion_prefix) :]


def result(verdict: Verdict, **kwargs: Any) -> ExecutionResult:
    return ExecutionResult(verdict=verdict, **kwargs)


# -- sample parsing ----------------------------------------------------------------------------------


def test_parse_completion_and_program_lines(problems: dict[str, Problem]) -> None:
    lines = [
        '{"task_id": "HumanEval/2", "completion": "    return number % 1.0\\n", "score": -0.5}\n',
        "\n",
        "   \n",
        '{"task_id": "HumanEval/0", "program": "print(1)\\n"}\n',
    ]
    samples = parse_samples(lines, problems, "s.jsonl")
    prompt = problems["HumanEval/2"].completion_prefix
    assert samples == [
        Sample(0, 1, "HumanEval/2", prompt + "    return number % 1.0\n", given_id="HumanEval/2"),
        Sample(1, 4, "HumanEval/0", "print(1)\n", given_id="HumanEval/0"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"s\.jsonl, line 2: invalid JSON \(Expecting property name"),
        ('["HumanEval/0", "x"]', r"s\.jsonl, line 2: expected a JSON object, got list"),
        ('{"completion": "x"}', r"s\.jsonl, line 2: missing 'task_id'"),
        ('{"task_id": ["HumanEval/0"], "completion": "x"}', r"line 2: 'task_id' must be a string"),
        (
            '{"task_id": "HumanEval/1", "completion": "x"}',
            r"s\.jsonl, line 2: unknown task_id 'HumanEval/1' \(not among the 3 problems\); did you mean",
        ),
        (
            '{"task_id": "nothing-like-it", "completion": "x"}',
            r"unknown task_id 'nothing-like-it' \(not [^;]*$",
        ),
        (
            '{"task_id": "HumanEval/0", "completion": "x", "program": "y"}',
            r"s\.jsonl, line 2: has both of 'completion' and 'program'; give exactly one",
        ),
        ('{"task_id": "HumanEval/0"}', r"s\.jsonl, line 2: has neither of 'completion' and 'program'"),
        (
            '{"task_id": "HumanEval/0", "completion": null}',
            r"line 2: 'completion' must be a string, got NoneType",
        ),
        ('{"task_id": "HumanEval/0", "program": 3}', r"line 2: 'program' must be a string, got int"),
    ],
)
def test_malformed_lines_name_file_and_line(problems: dict[str, Problem], line: str, message: str) -> None:
    good = '{"task_id": "HumanEval/0", "completion": "    return True\\n"}'
    with pytest.raises(SampleFormatError, match=message):
        parse_samples([good + "\n", line + "\n"], problems, "s.jsonl")


def test_integer_task_ids_match_string_ids_and_stay_integers_in_results() -> None:
    problem = Problem(task_id="11", statement="s")
    sample = parse_samples(['{"task_id": 11, "program": "x"}'], {"11": problem}, "s")[0]
    assert sample.task_id == "11"
    assert result_record(sample, result(Verdict.PASSED))["task_id"] == 11
    sample = parse_samples(['{"task_id": "11", "program": "x"}'], {"11": problem}, "s")[0]
    assert result_record(sample, result(Verdict.PASSED))["task_id"] == "11"


def test_read_samples_missing_empty_and_gzip(tmp_path: Path, problems: dict[str, Problem]) -> None:
    with pytest.raises(SampleFormatError, match=r"samples file not found: .*nope\.jsonl"):
        read_samples(tmp_path / "nope.jsonl", problems)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(SampleFormatError, match=r"empty\.jsonl: no samples"):
        read_samples(empty, problems)
    packed = tmp_path / "s.jsonl.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write('{"task_id": "HumanEval/0", "program": "x"}\n')
    assert [s.task_id for s in read_samples(packed, problems)] == ["HumanEval/0"]


# -- result lines ------------------------------------------------------------------------------------


def test_result_record_of_a_failure() -> None:
    sample = Sample(index=4, line=6, task_id="T", program="p")
    outcome = result(
        Verdict.RUNTIME_ERROR,
        tests=[TestOutcome(verdict=Verdict.PASSED), TestOutcome(verdict=Verdict.RUNTIME_ERROR)],
        tests_total=5,
        error=ErrorInfo(type="KeyError", message="'a'", traceback="tb", test_index=1),
        run_time_s=0.25,
    )
    assert result_record(sample, outcome) == {
        "task_id": "T",
        "index": 4,
        "verdict": "RUNTIME_ERROR",
        "passed": False,
        "result": "failed: 'a'",
        "reward": -0.6,
        "tests": ["PASSED", "RUNTIME_ERROR"],
        "tests_total": 5,
        "error": {"type": "KeyError", "message": "'a'", "traceback": "tb", "test_index": 1},
        "time_s": 0.25,
    }


def test_result_record_of_a_sandbox_error_has_no_reward() -> None:
    record = result_record(Sample(0, 1, "T", "p"), result(Verdict.SANDBOX_ERROR, tests_total=2))
    assert (record["verdict"], record["reward"], record["tests"], record["error"]) == (
        "SANDBOX_ERROR",
        None,
        [],
        None,
    )
    assert record["passed"] is False and record["result"].startswith("failed: sandbox error")
    json.dumps(record)  # JSON-serialisable as is


@pytest.mark.parametrize(
    ("verdict", "error", "expected"),
    [
        (Verdict.PASSED, None, "passed"),
        (Verdict.TIMEOUT, ErrorInfo(type="Timeout", message="CPU limit"), "timed out"),
        (Verdict.FAILED_TEST, ErrorInfo(type="AssertionError"), "failed: AssertionError"),
        (Verdict.RUNTIME_ERROR, ErrorInfo(type="ZeroDivisionError", message="division by zero"),
         "failed: division by zero"),
        (Verdict.COMPILE_ERROR, ErrorInfo(type="SyntaxError", message="bad\nmore"), "failed: bad"),
        (Verdict.MEMORY_LIMIT, None, "failed: MEMORY_LIMIT"),
    ],
)  # fmt: skip
def test_human_eval_result_strings(verdict: Verdict, error: ErrorInfo | None, expected: str) -> None:
    record = result_record(Sample(0, 1, "T", "p"), result(verdict, error=error))
    assert (record["passed"], record["result"]) == (verdict == Verdict.PASSED, expected)


# -- summary -----------------------------------------------------------------------------------------


def test_summarize_hand_computed_pass_at_k() -> None:
    # 2 problems x n=10: A has c=3, B has c=0.
    task_ids = ["A"] * 10 + ["B"] * 10
    verdicts = [Verdict.PASSED] * 3 + [Verdict.FAILED_TEST] * 7 + [Verdict.COMPILE_ERROR] * 10
    summary = summarize(task_ids, [result(v) for v in verdicts], elapsed_s=4.0)
    assert summary.pass_at_k == pytest.approx({1: 0.15, 10: 0.5})  # (0.3 + 0)/2, (1 + 0)/2
    assert (summary.samples, summary.problems, summary.min_samples, summary.sandbox_errors) == (20, 2, 10, 0)
    assert list(summary.verdicts) == VERDICT_NAMES
    assert summary.verdicts == {
        **dict.fromkeys(VERDICT_NAMES, 0),
        "PASSED": 3,
        "FAILED_TEST": 7,
        "COMPILE_ERROR": 10,
    }
    assert summary.mean_reward == pytest.approx((3 * 1.0 + 7 * -0.3 + 10 * -1.0) / 20)
    assert summary.programs_per_s == pytest.approx(5.0)


def test_summarize_sandbox_errors_count_as_not_passed_and_are_not_scored() -> None:
    results = [result(Verdict.PASSED), result(Verdict.SANDBOX_ERROR), result(Verdict.FAILED_TEST)]
    summary = summarize(["A", "A", "B"], results)
    assert summary.pass_at_k == pytest.approx({1: (1 / 2 + 0) / 2})
    assert summary.sandbox_errors == 1
    assert summary.mean_reward == pytest.approx((1.0 - 0.3) / 2)
    assert summary.programs_per_s is None
    text = format_summary(summary)
    assert "mean reward: 0.3500 (over 2 scored samples)" in text
    assert "WARNING: 1 sample hit SANDBOX_ERROR" in text
    assert "pass@10, pass@100: not reported" in text and "the fewest is 1" in text


def test_summarize_only_sandbox_errors() -> None:
    summary = summarize(["A"], [result(Verdict.SANDBOX_ERROR)])
    assert summary.mean_reward is None and summary.pass_at_k == {1: 0.0}
    assert "mean reward: n/a (over 0 scored samples)" in format_summary(summary)


def test_summarize_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 task ids but 1 results"):
        summarize(["A", "B"], [result(Verdict.PASSED)])


# -- the command -------------------------------------------------------------------------------------


def test_version_and_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"coderl {coderl.__version__}"
    assert COMMANDS["execute"].load() is execute_cli
    assert main([]) == 2  # a subcommand is required


def write_samples(path: Path, problems: dict[str, Problem]) -> None:
    he0, he2, he12 = problems["HumanEval/0"], problems["HumanEval/2"], problems["HumanEval/12"]
    lines = [
        {"task_id": "HumanEval/0", "completion": completion(he0)},
        {"task_id": "HumanEval/0", "completion": "    return 1 / 0\n"},
        {"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"},
        None,  # a blank line: not a sample, does not count for "index"
        {"task_id": "HumanEval/2", "completion": completion(he2)},
        {"task_id": "HumanEval/2", "completion": "    return number\n"},
        {"task_id": "HumanEval/12", "program": he12.solutions[0]},
        {"task_id": "HumanEval/12", "completion": "    return (\n"},
    ]
    path.write_text("".join("\n" if x is None else json.dumps(x) + "\n" for x in lines), encoding="utf-8")


def outcome(
    task_id: str, index: int, verdict: str, reward: float, error: tuple[str, str] | None
) -> dict[str, Any]:
    """An expected RESULTS line, without time_s and the error's traceback (they vary)."""
    info = None if error is None else {"type": error[0], "message": error[1], "test_index": 0}
    passed = verdict == "PASSED"
    said = {"PASSED": "passed", "TIMEOUT": "timed out"}.get(verdict)
    if said is None and error is not None:
        said = f"failed: {error[1] or error[0]}"
    line = {"task_id": task_id, "index": index, "verdict": verdict, "passed": passed, "result": said}
    return line | {"reward": reward, "tests": [verdict], "tests_total": 1, "error": info}


EXPECTED_RESULTS = [
    outcome("HumanEval/0", 0, "PASSED", 1.0, None),
    outcome("HumanEval/0", 1, "RUNTIME_ERROR", -0.6, ("ZeroDivisionError", "division by zero")),
    outcome("HumanEval/0", 2, "TIMEOUT", -0.6, ("Timeout", "CPU limit of 1.0 s exceeded")),
    outcome("HumanEval/2", 3, "PASSED", 1.0, None),
    outcome("HumanEval/2", 4, "FAILED_TEST", -0.3, ("AssertionError", "")),
    outcome("HumanEval/12", 5, "PASSED", 1.0, None),
    outcome(
        "HumanEval/12",
        6,
        "COMPILE_ERROR",
        -1.0,
        ("SyntaxError", "'(' was never closed (solution.py, line 14)"),
    ),
]
EXPECTED_SUMMARY = [
    "verdicts:",
    "  PASSED              3",
    "  FAILED_TEST         1",
    "  RUNTIME_ERROR       1",
    "  COMPILE_ERROR       1",
    "  TIMEOUT             1",
    "  MEMORY_LIMIT        0",
    "  OUTPUT_LIMIT        0",
    "  SANDBOX_ERROR       0",
    "pass@1: 0.4444",  # (1/3 + 1/2 + 1/2) / 3
    "pass@10, pass@100: not reported (needs that many samples of every problem; the fewest is 2)",
    "mean reward: 0.0714 (over 7 scored samples)",  # (1 - .6 - .6 + 1 - .3 + 1 - 1) / 7
]


def test_execute_end_to_end_process_backend(
    tmp_path: Path, problems: dict[str, Problem], capsys: pytest.CaptureFixture[str]
) -> None:
    samples, out = tmp_path / "samples.jsonl", tmp_path / "results.jsonl"
    write_samples(samples, problems)
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(out)]
    flags = ["--backend", "process", "--workers", "2", "--timeout", "1"]
    code = main([*argv, *flags, "--set", "max_attempts=1", "limits.wall_factor=10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "WARNING: sandbox backend 'process' gives NO container isolation" in captured.err

    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        assert isinstance(record.pop("time_s"), float)
        if record["error"] is not None:
            assert isinstance(record["error"].pop("traceback"), str)
    assert records == EXPECTED_RESULTS
    assert not list(tmp_path.glob(".results.jsonl.*"))  # the temporary file was renamed

    lines = captured.out.splitlines()
    assert lines[0].startswith("executed 7 samples of 3 problems in ")
    assert lines[0].endswith(" programs/s)")
    assert lines[1:] == EXPECTED_SUMMARY


def _no_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_executor(*_: object) -> None:
        raise AssertionError("nothing may run")

    monkeypatch.setattr(execute_cli, "Executor", no_executor)


@pytest.mark.parametrize(
    "case", ["directory", "parent is a file", "no permission", "read-only filesystem", "samples file"]
)
def test_execute_refuses_an_out_it_cannot_write_before_running(
    tmp_path: Path,
    problems: dict[str, Problem],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, problems)
    (tmp_path / "file").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = {
        "directory": tmp_path,
        "parent is a file": tmp_path / "file" / "sub" / "r.jsonl",
        "no permission": locked / "r.jsonl",
        "read-only filesystem": Path("/proc/coderl-results.jsonl"),  # unwritable even for root
        "samples file": samples,
    }[case]
    if case == "no permission" and os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions do not bind")
    _no_executor(monkeypatch)
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(out)]
    assert main([*argv, "--backend", "process"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"coderl execute: error: --out {out}") and "Traceback" not in err
    assert len(err.splitlines()) == 1 or "WARNING" in err  # the process backend's warning comes first
    assert list(locked.iterdir()) == []


def test_execute_creates_missing_directories_of_out(
    tmp_path: Path, problems: dict[str, Problem], capsys: pytest.CaptureFixture[str]
) -> None:
    samples, out = tmp_path / "samples.jsonl", tmp_path / "new" / "dir" / "results.jsonl"
    samples.write_text('{"task_id": 0, "program": "x"}\n'.replace("0", '"HumanEval/0"'))
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(out)]
    assert main([*argv, "--backend", "process", "--set", "max_attempts=1"]) == 0
    record = json.loads(out.read_text())
    assert (record["verdict"], record["passed"]) == ("RUNTIME_ERROR", False)
    assert record["result"] == "failed: name 'x' is not defined"
    summary = capsys.readouterr().out
    assert summary.startswith("executed 1 sample of 1 problem in ")
    assert "(over 1 scored sample)" in summary


def test_execute_rejects_a_bad_sample_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    samples, out = tmp_path / "samples.jsonl", tmp_path / "results.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "program": "x"}\n{"task_id": "HumanEval/0"}\n')

    def no_executor(*_: object) -> None:
        raise AssertionError("nothing may run when a sample is malformed")

    monkeypatch.setattr(execute_cli, "Executor", no_executor)
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(out)]
    assert main([*argv, "--backend", "process"]) == 2
    err = capsys.readouterr().err
    assert f"coderl execute: error: {samples}, line 2: has neither of 'completion' and 'program'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "limits.timeout=3"], "unknown key 'limits.timeout'"),
        (["--workers", "0"], "workers: bad value 0"),
        (["--config", "missing.toml"], "config file not found: missing.toml"),
    ],
)
def test_execute_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", "s.jsonl", "--out", str(tmp_path / "r")]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


def test_execute_unknown_problems_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["execute", "--problems", str(tmp_path / "none.jsonl"), "--samples", "s", "--out", "r"]
    assert main([*argv, "--backend", "process"]) == 2
    assert "none.jsonl: no such file or directory" in capsys.readouterr().err


def test_execute_sandbox_that_cannot_start(
    tmp_path: Path,
    problems: dict[str, Problem],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, problems)

    def broken(*_: object) -> None:
        raise SandboxFault("sandbox image 'coderl-sandbox:latest' not found")

    monkeypatch.setattr(execute_cli, "Executor", broken)
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(tmp_path / "r")]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "cannot start the 'docker' sandbox: SandboxFault: sandbox image" in err
    assert "deploy/build-images.sh" in err and "--backend process" in err
