"""Faults of the executor service, with a real Redis and real Docker workers: a worker killed
with SIGKILL mid-batch, Redis restarted mid-batch, a burst of 10,000 requests (memory stays
bounded), and hostile messages interleaved with good ones. Measured numbers are printed as
``MEASURED ...`` lines (run with -s to see them)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from coderl import streams
from coderl.outcomes import Verdict
from coderl.wire import ExecutionRequest
from executor.client import ClientConfig, RedisExecutionClient
from executor.engine import ExecutionItem
from problems import Problem, TestCase, load_problems_by_id

pytestmark = [pytest.mark.redis, pytest.mark.docker, pytest.mark.slow]

NAMES = streams.StreamNames()
MINE = f"{NAMES.results}:faults"
HUMANEVAL = Path(__file__).resolve().parents[1] / "fixtures" / "humaneval_sample.jsonl.gz"
SUM = Problem(task_id="sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="2 3\n", stdout="5\n")])
SUM_CASES = [
    ("print(sum(map(int, input().split())))", Verdict.PASSED),
    ("print(6)", Verdict.FAILED_TEST),
    ("1 / 0", Verdict.RUNTIME_ERROR),
]


def corpus(count: int) -> list[tuple[Problem, str, Verdict]]:
    """Quick programs with known verdicts: the stdio sum problem and HumanEval solutions."""
    cases = [(SUM, program, verdict) for program, verdict in SUM_CASES]
    for problem in load_problems_by_id(HUMANEVAL).values():
        cases += [
            (problem, problem.solutions[0], Verdict.PASSED),
            (problem, "def (:\n", Verdict.COMPILE_ERROR),
        ]
    return [cases[i % len(cases)] for i in range(count)]


def measured(name: str, value: Any) -> None:
    print(f"MEASURED {name}: {value}")


def submit_all(server: Any, cases: list[tuple[Problem, str, Verdict]], prefix: str) -> dict[str, Verdict]:
    for problem in {case[0].task_id: case[0] for case in cases}.values():
        streams.store_problem(server.client, NAMES, problem)
    expected, pipe = {}, server.client.pipeline(transaction=False)
    for i, (problem, program, verdict) in enumerate(cases):
        request = ExecutionRequest(
            sample_id=f"{prefix}-{i}", task_id=problem.task_id, program=program, results_stream=MINE
        )
        pipe.xadd(NAMES.requests, {streams.DATA_FIELD: request.to_wire()})
        expected[request.sample_id] = verdict
    pipe.execute()
    return expected


def check_exactly_once(server: Any, expected: dict[str, Verdict]) -> dict[str, Any]:
    """Every sample has exactly one result in the whole results stream, with the right verdict."""
    reports = [r for r in server.reports(MINE) if r.sample_id in expected]
    counts = Counter(r.sample_id for r in reports)
    assert not [s for s, n in counts.items() if n != 1], (
        f"duplicated: {[s for s, n in counts.items() if n > 1]}"
    )
    assert set(counts) == set(expected), f"lost: {sorted(set(expected) - set(counts))[:20]}"
    wrong = [(r.sample_id, r.result.verdict) for r in reports if r.result.verdict != expected[r.sample_id]]
    assert not wrong, f"wrong verdicts: {wrong[:10]}"
    return {r.sample_id: r for r in reports}


def test_kill_9_of_a_worker_mid_batch_loses_and_duplicates_nothing(
    docker_engine: None, redis_server: Any, workers: Any, wait_for: Any
) -> None:
    workers.start(redis_server.url, worker_id="w0")
    victim = workers.start(redis_server.url, worker_id="w1")
    count = 1200
    started = time.monotonic()
    expected = submit_all(redis_server, corpus(count), "k")
    client = redis_server.client
    wait_for(lambda: client.xlen(MINE) >= count // 4, 120, lambda: f"{client.xlen(MINE)} results")
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait(timeout=10)
    killed_at = client.xlen(MINE)
    stale = client.xpending_range(NAMES.requests, NAMES.group, "-", "+", 100, consumername="w1")
    stale_samples = {
        ExecutionRequest.model_validate_json(
            streams.decode_entry(client.xrange(NAMES.requests, e, e)[0][1])
        ).sample_id
        for e in (p["message_id"] for p in stale)
    }
    assert stale_samples, "the killed worker had nothing in flight: the reclaim path was not exercised"
    wait_for(lambda: client.xlen(MINE) >= count, 300, lambda: f"{client.xlen(MINE)} of {count} results")
    elapsed = time.monotonic() - started
    reports = check_exactly_once(redis_server, expected)
    for sample in stale_samples:  # the killed worker's in-flight requests: reclaimed and run again
        assert reports[sample].deliveries >= 2 and reports[sample].worker_id == "w0", reports[sample]
    assert client.xlen(NAMES.requests) == 0 and redis_server.pending() == 0
    measured(
        "kill -9 batch",
        f"{count} requests in {elapsed:.1f} s ({count / elapsed:.0f}/s), killed at {killed_at}",
    )
    measured("kill -9 reclaimed in-flight", len(stale_samples))

    workers.start(redis_server.url, worker_id="w1")  # the same consumer name, restarted
    more = submit_all(redis_server, corpus(100), "again")
    wait_for(lambda: client.xlen(MINE) >= count + 100, 120, lambda: f"{client.xlen(MINE)} results")
    again = check_exactly_once(redis_server, more)
    assert {r.worker_id for r in again.values()} == {"w0", "w1"}  # the restarted worker serves too
    consumers = {
        c["name"].decode(): c["pending"] for c in client.xinfo_consumers(NAMES.requests, NAMES.group)
    }
    assert consumers.get("w1", 0) == 0 and redis_server.pending() == 0


def test_redis_restart_mid_batch(docker_engine: None, redis_factory: Any, workers: Any) -> None:
    server = redis_factory(appendonly=True)
    pool = [workers.start(server.url, worker_id=f"w{i}") for i in range(2)]
    cases = corpus(1000)
    client = RedisExecutionClient(ClientConfig(redis_url=server.url, timeout_s=300, max_outstanding=500))
    results, restarted_at, started = {}, None, time.monotonic()
    for index, result in client.iter_results([ExecutionItem(p, program) for p, program, _ in cases]):
        assert index not in results, f"index {index} answered twice"
        results[index] = result
        if restarted_at is None and len(results) >= 300:
            restarted_at = len(results)
            server.restart()
    elapsed = time.monotonic() - started
    assert restarted_at is not None
    assert sorted(results) == list(range(len(cases)))
    wrong = [(i, r.verdict) for i, r in results.items() if r.verdict != cases[i][2]]
    assert not wrong, f"wrong verdicts: {wrong[:10]}"
    assert client.progress.duplicates == 0 and client.progress.dead_lettered == 0
    assert server.client.xlen(NAMES.requests) == 0 and server.pending() == 0
    assert all(worker.alive() for worker in pool), [worker.tail() for worker in pool]
    measured(
        "redis restart batch", f"{len(cases)} requests in {elapsed:.1f} s, restarted after {restarted_at}"
    )


def test_burst_of_10000_keeps_memory_bounded(
    docker_engine: None, redis_server: Any, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = [workers.start(redis_server.url, worker_id=f"w{i}") for i in range(2)]
    client = RedisExecutionClient(ClientConfig(redis_url=redis_server.url, timeout_s=500))
    warmup = [ExecutionItem(SUM, SUM_CASES[0][0])] * 20
    assert len(client.execute_many(warmup)) == 20
    baseline, rss_start = redis_server.used_memory(), [w.rss_kb() for w in pool]
    count, peak, rss_peak, lengths = 10_000, baseline, list(rss_start), []
    items = [ExecutionItem(SUM, SUM_CASES[i % 2][0]) for i in range(count)]
    started, received = time.monotonic(), 0
    for index, result in client.iter_results(items):
        assert result.verdict == SUM_CASES[index % 2][1], (index, result)
        received += 1
        if received % 250 == 0:
            peak = max(peak, redis_server.used_memory())
            rss_peak = [max(a, w.rss_kb()) for a, w in zip(rss_peak, pool, strict=True)]
            lengths.append(redis_server.client.xlen(NAMES.requests))
    elapsed = time.monotonic() - started
    after = redis_server.used_memory()
    done_keys = list(redis_server.client.scan_iter(match=NAMES.done("*"), count=1000))
    per_marker = sum(redis_server.client.memory_usage(k) or 0 for k in done_keys[:200]) / 200
    markers = per_marker * count  # the warm-up's markers are in the baseline
    assert client.progress.received == count and client.progress.duplicates == 0
    assert redis_server.client.xlen(NAMES.requests) == 0 and redis_server.pending() == 0
    assert redis_server.client.keys(f"{NAMES.results}*") == []
    assert len(done_keys) == count + len(warmup)  # the only thing a batch leaves (with a TTL)
    assert after - baseline < markers + (1 << 20), (baseline, after, markers)
    assert peak - baseline < 64 << 20
    assert all(p - s < 200_000 for p, s in zip(rss_peak, rss_start, strict=True)), (rss_start, rss_peak)
    assert all(worker.alive() for worker in pool)
    with capsys.disabled():
        measured(
            "burst", f"{count} requests in {elapsed:.1f} s ({count / elapsed:.0f}/s) on {os.cpu_count()} CPUs"
        )
        measured(
            "burst used_memory",
            f"baseline {baseline}, peak {peak}, after {after} (done markers {markers:.0f})",
        )
        measured(
            "burst requests stream length (every 250 results)", f"max {max(lengths)}, last {lengths[-1]}"
        )
        measured("burst worker VmRSS kB", f"start {rss_start}, peak {rss_peak}")


def payload(fields: dict[Any, Any]) -> str:
    """What a dead letter keeps of a message: its data field, decoded and truncated."""
    data = fields.get("data", b"")
    return (data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data)[:2000]


def hostile_messages() -> list[tuple[dict[Any, Any], str]]:
    """(stream entry fields, pattern of the dead letter's reason)"""
    good = {"sample_id": "evil", "task_id": "sum", "program": "print(5)", "results_stream": MINE}
    request = lambda **fields: {"data": json.dumps(good | fields)}  # noqa: E731
    return [
        ({"data": "not json {"}, "Invalid JSON: expected ident"),
        ({"data": "{" * 2_000_000}, "Invalid JSON: (key must be a string|recursion limit)"),
        ({"data": "[" * 100_000}, "Invalid JSON: recursion limit exceeded"),
        ({"data": '{"a":' * 50_000 + "1" + "}" * 50_000}, "Invalid JSON: recursion limit exceeded"),
        (request(program="x" * (3 << 20)), "program\n  String should have at most 1048576 characters"),
        (request(sample_id=5), "sample_id\n  Input should be a valid string"),
        (request(program=["print(5)"]), "program\n  Input should be a valid string"),
        (request(created_at="seven"), "created_at\n  Input should be a valid number"),
        (request(which=3), "which\n  Input should be 'hidden', 'example' or 'all'"),
        (request(schema_version=99), "schema version 99 is not 2"),
        (request(extra="x"), "extra\n  Extra inputs are not permitted"),
        ({"data": os.urandom(4096)}, "Invalid JSON"),
        ({"data": b"\xff\xfe\x00garbage"}, "Invalid JSON"),
        ({"not-data": "x"}, "stream entry has no 'data' field"),
        ({"data": "null"}, "Input should be an object"),
        ({"data": "[1, 2]"}, "Input should be an object"),
        ({"data": ""}, "Invalid JSON: EOF"),
        (request(task_id="../../../etc/passwd"), r"unknown problem id '\.\./\.\./\.\./etc/passwd'"),
        (request(task_id="a/b\\c?*[x]\u0000"), r"unknown problem id 'a/b\\\\c\?\*\[x\]\\x00'"),
        (request(task_id="corrupt"), "stored problem 'corrupt' is unreadable"),
        (request(results_stream=NAMES.requests), "is outside coderl:exec:results"),
        (request(results_stream="coderl:problem:sum"), "is outside coderl:exec:results"),
    ]


def test_hostile_messages_are_dead_lettered_and_good_ones_served(
    docker_engine: None, redis_server: Any, workers: Any, wait_for: Any
) -> None:
    pool = [workers.start(redis_server.url, worker_id=f"w{i}") for i in range(2)]
    client = redis_server.client
    streams.store_problem(client, NAMES, SUM)
    client.set(NAMES.problem("corrupt"), b"\x00{]")
    kinds, hostile, expected = hostile_messages(), [], {}
    for i in range(300):
        if i % 3 == 2:
            fields, _ = kinds[len(hostile) % len(kinds)]
            client.xadd(NAMES.requests, fields)
            hostile.append(len(hostile) % len(kinds))
        else:
            program, verdict = SUM_CASES[i % 2]
            request = ExecutionRequest(
                sample_id=f"good-{i}", task_id="sum", program=program, results_stream=MINE
            )
            streams.submit(client, NAMES, request)
            expected[request.sample_id] = verdict
    assert len(hostile) == 100
    wait_for(lambda: client.xlen(MINE) >= len(expected), 120, lambda: f"{client.xlen(MINE)} results")
    check_exactly_once(redis_server, expected)
    letters = wait_for(lambda: len(d := redis_server.dead_letters()) >= 100 and d, 30, "dead letters")
    assert len(letters) == 100
    found: Counter[int] = Counter()
    for letter in letters:  # which message it was: by its (truncated) payload, then by the reason
        same_payload = [k for k, (fields, _) in enumerate(kinds) if payload(fields) == letter.payload]
        matches = [k for k in same_payload if re.search(kinds[k][1], letter.reason)]
        assert matches, f"unexpected dead letter: {letter.reason[:300]!r} for {letter.payload[:100]!r}"
        found[matches[0]] += 1
    assert found == Counter(hostile)
    assert all(worker.alive() for worker in pool), [worker.tail() for worker in pool]
    assert streams.queue_stats(client, NAMES) == streams.QueueStats(length=0, pending=0, lag=0, workers=2)
