"""The executor worker (executor/worker.py) as a real process on a real Redis, with the process
backend (the worker's logic is under test here; tests/service/test_faults.py uses Docker), the
client (executor/client.py) and ``coderl execute --redis-url``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from coderl import streams
from coderl.cli import main
from coderl.outcomes import Verdict
from coderl.wire import MAX_PROGRAM_CHARS, ExecutionRequest
from executor.client import BatchTimeoutError, ClientConfig, Progress, RedisExecutionClient
from executor.engine import ExecutionItem
from problems import Problem, TestCase, load_problems_by_id

pytestmark = pytest.mark.redis

NAMES = streams.StreamNames()
HUMANEVAL = Path(__file__).resolve().parents[1] / "fixtures" / "humaneval_sample.jsonl.gz"
SUM = Problem(task_id="sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="2 3\n", stdout="5\n")])
NO_TESTS = Problem(task_id="no-tests", statement="")
OK, WRONG, CRASH = "print(sum(map(int, input().split())))", "print(6)", "1 / 0"
SLOW = "import time\ntime.sleep({})\nprint(5)"
MINE = f"{NAMES.results}:mine"


def submit(server: Any, sample_id: str, program: str = OK, task_id: str = "sum", **fields: Any) -> str:
    request = ExecutionRequest(sample_id=sample_id, task_id=task_id, program=program, **fields)
    return streams.submit(server.client, NAMES, request)


def wait_reports(server: Any, wait_for: Any, stream: str, count: int, timeout: float = 60) -> list[Any]:
    return wait_for(
        lambda: (reports := server.reports(stream)) and len(reports) >= count and reports,
        timeout,
        lambda: f"{len(server.reports(stream))} of {count} results in {stream}",
    )


def test_results_carry_sample_id_task_id_and_worker_id(
    redis_server: Any, workers: Any, wait_for: Any
) -> None:
    workers.start(redis_server.url, backend="process", worker_id="w-one")
    streams.store_problem(redis_server.client, NAMES, SUM)
    expected = {"ok": Verdict.PASSED, "wrong": Verdict.FAILED_TEST, "crash": Verdict.RUNTIME_ERROR}
    for name, program in zip(expected, (OK, WRONG, CRASH), strict=True):
        submit(redis_server, name, program, results_stream=MINE)
    submit(redis_server, "shared", OK)  # no results_stream: the shared one
    reports = {r.sample_id: r for r in wait_reports(redis_server, wait_for, MINE, 3)}
    assert {k: r.result.verdict for k, r in reports.items()} == expected
    assert {(r.task_id, r.worker_id, r.deliveries) for r in reports.values()} == {("sum", "w-one", 1)}
    assert reports["crash"].result.error.type == "ZeroDivisionError"
    (shared,) = wait_reports(redis_server, wait_for, NAMES.results, 1)
    assert (shared.sample_id, shared.task_id, shared.result.verdict) == ("shared", "sum", Verdict.PASSED)
    assert redis_server.client.xlen(NAMES.requests) == 0 and redis_server.pending() == 0


def test_malformed_requests_are_dead_lettered_and_the_worker_keeps_serving(
    redis_server: Any, workers: Any, wait_for: Any
) -> None:
    worker = workers.start(redis_server.url, backend="process")
    client = redis_server.client
    streams.store_problem(client, NAMES, SUM)
    client.set(NAMES.problem("corrupt"), "{not a problem")
    good = {"sample_id": "good", "task_id": "sum", "program": OK, "results_stream": MINE}
    bad = [
        ({"data": "not json"}, "malformed request: 1 validation error for ExecutionRequest\n  Invalid JSON"),
        ({"other": "x"}, "malformed request: \"stream entry has no 'data' field\""),
        ({"data": json.dumps(good | {"schema_version": 1})}, "schema version 1 is not 2"),
        ({"data": json.dumps(good | {"task_id": "nope"})}, "unknown problem id 'nope': store it"),
        (
            {"data": json.dumps(good | {"program": "x" * (MAX_PROGRAM_CHARS + 1)})},
            "at most 1048576 characters",
        ),
        (
            {"data": json.dumps(good | {"results_stream": NAMES.requests})},
            "is outside coderl:exec:results[:*]",
        ),
        ({"data": json.dumps(good | {"task_id": "corrupt"})}, "stored problem 'corrupt' is unreadable"),
    ]
    for fields, _ in bad:
        client.xadd(NAMES.requests, fields)
    client.xadd(NAMES.requests, {"data": json.dumps(good)})
    (report,) = wait_reports(redis_server, wait_for, MINE, 1)
    assert (report.sample_id, report.result.verdict) == ("good", Verdict.PASSED)
    letters = wait_for(lambda: len(d := redis_server.dead_letters()) == len(bad) and d, 10, "dead letters")
    for letter, (_, reason) in zip(letters, bad, strict=True):
        assert reason in letter.reason, letter
        assert letter.worker_id == "w0" and letter.deliveries == 1
    assert [letter.sample_id for letter in letters] == [None, None, None, "good", None, "good", "good"]
    assert len(letters[4].payload) == 2000  # the raw message is kept, truncated
    assert worker.alive(), worker.tail()
    assert client.xlen(NAMES.requests) == 0 and redis_server.pending() == 0


def test_a_failing_sandbox_is_redelivered_then_dead_lettered(
    redis_server: Any, workers: Any, wait_for: Any
) -> None:
    """A problem without tests makes the executor answer SANDBOX_ERROR (engine._score): never
    published, the request is redelivered and dead-lettered after max_deliveries; the client
    turns the dead letter into a SANDBOX_ERROR result with the reason."""
    settings = ("max_deliveries=2",)
    workers.start(redis_server.url, backend="process", claim_idle_ms=1000, settings=settings)
    config = ClientConfig(redis_url=redis_server.url, timeout_s=60)
    client = RedisExecutionClient(config)
    results = dict(client.iter_results([ExecutionItem(NO_TESTS, OK), ExecutionItem(SUM, OK)]))
    assert results[1].verdict == Verdict.PASSED
    assert results[0].verdict == Verdict.SANDBOX_ERROR and results[0].error is not None
    assert results[0].error.type == "DeadLetter"
    assert results[0].error.message.startswith("no result after 2 deliveries")
    (letter,) = redis_server.dead_letters()
    assert letter.deliveries == 3 and letter.sample_id == f"{client.client_id}-0:0"
    counters = lambda: redis_server.client.hgetall(NAMES.worker("w0"))  # noqa: E731
    heartbeat = wait_for(lambda: float(counters().get(b"reclaimed", 0)) >= 2 and counters(), 10, counters)
    assert float(heartbeat[b"sandbox_errors"]) == 2 and float(heartbeat[b"dead_lettered"]) == 1
    assert client.progress == Progress(total=2, submitted=2, received=2, dead_lettered=1)


def test_sigterm_lets_in_flight_programs_finish(redis_server: Any, workers: Any, wait_for: Any) -> None:
    first = workers.start(
        redis_server.url, backend="process", worker_id="first", settings=("drain_timeout_s=30", "prefetch=0")
    )
    streams.store_problem(redis_server.client, NAMES, SUM)
    for i in range(2):
        submit(redis_server, f"slow-{i}", SLOW.format(2), results_stream=MINE)
    for i in range(3):
        submit(redis_server, f"quick-{i}", results_stream=MINE)
    wait_for(lambda: redis_server.pending() == 2, 10, "the first worker did not take the slow requests")
    first.popen.send_signal(signal.SIGTERM)
    assert first.popen.wait(timeout=30) == 0, first.tail()
    reports = {r.sample_id: r.worker_id for r in redis_server.reports(MINE)}
    assert reports == {"slow-0": "first", "slow-1": "first"}  # finished during the drain
    workers.start(redis_server.url, backend="process", worker_id="second")
    reports = {r.sample_id: r.worker_id for r in wait_reports(redis_server, wait_for, MINE, 5)}
    assert reports == {"slow-0": "first", "slow-1": "first"} | {f"quick-{i}": "second" for i in range(3)}
    assert len(redis_server.reports(MINE)) == 5 and redis_server.pending() == 0


def test_requests_read_ahead_are_handed_back_on_sigterm(
    redis_server: Any, workers: Any, wait_for: Any
) -> None:
    # 2 sandboxes, prefetch 1: two slow programs run, two quick ones wait in the worker.
    first = workers.start(
        redis_server.url, backend="process", worker_id="first", settings=("drain_timeout_s=0.5",)
    )
    streams.store_problem(redis_server.client, NAMES, SUM)
    for i in range(2):
        submit(redis_server, f"slow-{i}", SLOW.format(5), results_stream=MINE)
    for i in range(2):
        submit(redis_server, f"quick-{i}", results_stream=MINE)
    wait_for(lambda: redis_server.pending() == 4, 10, "the worker did not read ahead")
    first.popen.send_signal(signal.SIGTERM)
    assert first.popen.wait(timeout=20) == 0, first.tail()
    assert "handing back 4 unfinished requests" in first.tail()
    workers.start(redis_server.url, backend="process", worker_id="second", claim_idle_ms=60_000)
    reports = wait_reports(redis_server, wait_for, MINE, 4, timeout=20)
    assert sorted(r.sample_id for r in reports) == ["quick-0", "quick-1", "slow-0", "slow-1"]
    assert {r.worker_id for r in reports} == {"second"} and redis_server.pending() == 0


def test_sigterm_hands_back_what_does_not_finish(redis_server: Any, workers: Any, wait_for: Any) -> None:
    first = workers.start(
        redis_server.url, backend="process", worker_id="first", settings=("drain_timeout_s=0.5", "prefetch=0")
    )
    streams.store_problem(redis_server.client, NAMES, SUM)
    for i in range(2):
        submit(redis_server, f"slow-{i}", SLOW.format(5), results_stream=MINE)
    wait_for(lambda: redis_server.pending() == 2, 10, "the first worker did not take the requests")
    first.popen.send_signal(signal.SIGTERM)
    assert first.popen.wait(timeout=20) == 0, first.tail()
    assert "handing back 2 unfinished requests" in first.tail()
    assert redis_server.pending() == 2 and redis_server.reports(MINE) == []
    workers.start(redis_server.url, backend="process", worker_id="second", claim_idle_ms=60_000)
    reports = wait_reports(redis_server, wait_for, MINE, 2, timeout=12)  # at once, not 15 s apart
    assert sorted((r.sample_id, r.worker_id, r.deliveries) for r in reports) == [
        ("slow-0", "second", 2),
        ("slow-1", "second", 2),
    ]
    assert all(r.result.verdict == Verdict.PASSED for r in reports)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_endpoints(redis_server: Any, workers: Any, wait_for: Any) -> None:
    port = workers.start(redis_server.url, backend="process", worker_id="h", health=True).health_port
    assert http_get(port, "/livez") == (200, "live\n")
    wait_for(lambda: http_get(port, "/readyz") == (200, "ready\n"), 10, "/readyz")
    assert http_get(port, "/nope")[0] == 404
    streams.store_problem(redis_server.client, NAMES, SUM)
    submit(redis_server, "m", results_stream=MINE)
    wait_reports(redis_server, wait_for, MINE, 1)
    metrics = http_get(port, "/metrics")[1]
    assert 'coderl_executor_programs_total{worker="h",verdict="PASSED"} 1\n' in metrics
    assert 'coderl_executor_published{worker="h"} 1\n' in metrics
    assert 'coderl_executor_uptime_s{worker="h"} ' in metrics
    probe = [sys.executable, "-m", "executor", "health", "--port", str(port)]
    assert subprocess.run(probe, timeout=30, check=False).returncode == 0
    redis_server.stop()
    wait_for(lambda: http_get(port, "/readyz") == (503, "not ready\n"), 15, "/readyz without Redis")
    assert http_get(port, "/livez") == (200, "live\n")  # the loop still turns
    assert subprocess.run(probe, timeout=30, check=False).returncode == 1


def test_client_backpressure_progress_and_cleanup(redis_server: Any, workers: Any) -> None:
    workers.start(redis_server.url, backend="process")
    client = RedisExecutionClient(ClientConfig(redis_url=redis_server.url, max_outstanding=3, timeout_s=60))
    items = [ExecutionItem(SUM, OK if i % 2 else WRONG) for i in range(20)]
    seen = []
    for index, result in client.iter_results(items):
        seen.append(index)
        assert client.progress.outstanding <= 3
        assert redis_server.client.xlen(NAMES.requests) <= 3
        assert result.verdict == (Verdict.PASSED if index % 2 else Verdict.FAILED_TEST)
    assert sorted(seen) == list(range(20))
    assert client.progress == Progress(total=20, submitted=20, received=20)
    assert redis_server.client.keys(f"{NAMES.results}*") == []  # the private stream is gone
    assert client.queue_stats() == streams.QueueStats(length=0, pending=0, lag=0, workers=1)
    assert [r.verdict for r in client.execute_many(items[:2])] == [Verdict.FAILED_TEST, Verdict.PASSED]


def test_client_timeout_lists_missing_results_and_cancels(redis_server: Any) -> None:
    redis_server.client.hset(NAMES.worker("ghost"), "uptime_s", "1")  # a heartbeat, but nobody works
    redis_server.client.expire(NAMES.worker("ghost"), 60)
    client = RedisExecutionClient(ClientConfig(redis_url=redis_server.url, timeout_s=1))
    with pytest.raises(BatchTimeoutError, match=r"^3 of 3 results missing after 1 s \(3 submitted\)$"):
        list(client.iter_results([ExecutionItem(SUM, OK)] * 3))
    assert redis_server.client.xlen(NAMES.requests) == 0  # nobody would read their results
    (stream,) = redis_server.client.keys(f"{NAMES.results}:*")
    assert 0 < redis_server.client.ttl(stream) <= 600  # late results expire with it


def execute(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_execute_via_gives_the_in_process_results(
    tmp_path: Path, redis_server: Any, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = load_problems_by_id(HUMANEVAL)
    lines = []
    for task_id, problem in problems.items():
        canonical = problem.solutions[0][len(problem.completion_prefix) :]
        lines += [
            {"task_id": task_id, "completion": canonical},
            {"task_id": task_id, "program": problem.solutions[0]},
        ]
        lines += [
            {"task_id": task_id, "completion": "    return None\n"},
            {"task_id": task_id, "completion": "  (\n"},
        ]
    lines.append({"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"})
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    base = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out"]
    limits = ["max_attempts=1", "limits.wall_factor=10"]
    local = [*base, str(tmp_path / "local.jsonl"), "--backend", "process", "--workers", "2", "--timeout", "1"]
    code, local_out, _ = execute([*local, "--set", *limits], capsys)
    assert code == 0
    settings = ("executor.limits.timeout_s=1", *(f"executor.{limit}" for limit in limits))
    workers.start(redis_server.url, backend="process", settings=settings)
    code, via_out, err = execute(
        [*base, str(tmp_path / "via.jsonl"), "--redis-url", redis_server.url, "--set", "timeout_s=120"],
        capsys,
    )
    assert code == 0, err
    assert "NO container isolation" not in err

    def records(name: str) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        return [row | {"time_s": None} for row in rows]

    assert records("via.jsonl") == records("local.jsonl")
    verdicts = [row["verdict"] for row in records("via.jsonl")]
    assert verdicts.count("PASSED") == 2 * len(problems) and verdicts[-1] == "TIMEOUT"
    assert via_out[1:] == local_out[1:]  # the same summary
    assert via_out[0].startswith(f"executed {len(lines)} samples of {len(problems)} problems in ")
    assert redis_server.client.keys(f"{NAMES.results}*") == []


def test_execute_via_usage_errors(
    tmp_path: Path, redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "program": "print(1)"}\n')
    argv = ["execute", "--problems", str(HUMANEVAL), "--samples", str(samples), "--out", str(tmp_path / "r")]
    code, _, err = execute([*argv, "--redis-url", redis_server.url, "--set", "no_worker_timeout_s=1"], capsys)
    assert code == 3
    assert f"no executor workers are serving {redis_server.url}: start them with `docker compose up`" in err
    assert redis_server.client.xlen(NAMES.requests) == 0  # the request was withdrawn
    code, _, err = execute([*argv, "--redis-url", redis_server.url, "--backend", "process"], capsys)
    assert code == 2 and "--backend configure the in-process executor; with --redis-url the workers'" in err
    code, _, err = execute([*argv, "--redis-url", "localhost:6379"], capsys)
    assert code == 2 and "argument --redis-url: expected redis://HOST:PORT[/DB], got 'localhost:6379'" in err
    redis_server.stop()
    code, _, err = execute([*argv, "--via", redis_server.url], capsys)  # the old name of --redis-url
    assert code == 3 and f"--redis-url {redis_server.url}: Error 111 connecting to 127.0.0.1" in err
