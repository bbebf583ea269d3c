"""The wire models (coderl/wire.py) and the stream helpers (coderl/streams.py) on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pydantic import ValidationError

from coderl import streams
from coderl.execution import ExecutionResult, TestOutcome
from coderl.outcomes import Verdict
from coderl.wire import (
    MAX_PROGRAM_CHARS,
    SCHEMA_VERSION,
    DeadLetter,
    ExecutionReport,
    ExecutionRequest,
    StoredProblem,
)
from problems import Problem, TestCase

pytestmark = pytest.mark.redis

NAMES = streams.StreamNames()
SUM = Problem(task_id="sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="2 3\n", stdout="5\n")])
PASSED = ExecutionResult(verdict=Verdict.PASSED, tests=[TestOutcome(verdict=Verdict.PASSED)])


def request(sample_id: str = "s-1", **fields: Any) -> ExecutionRequest:
    return ExecutionRequest(**({"sample_id": sample_id, "task_id": "sum", "program": "print(5)"} | fields))


def report(sample_id: str = "s-1") -> ExecutionReport:
    return ExecutionReport(sample_id=sample_id, task_id="sum", result=PASSED, worker_id="w")


# --- wire models ---------------------------------------------------------------------------------


def test_schema_version_mismatch_names_both_versions() -> None:
    payload = request().model_dump() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(
        ValidationError, match=rf"schema version {SCHEMA_VERSION + 1} is not {SCHEMA_VERSION}: "
    ):
        ExecutionRequest.model_validate(payload)
    for model in (ExecutionReport, DeadLetter, StoredProblem):
        with pytest.raises(ValidationError, match="producer and worker must run the same release"):
            model.model_validate_json('{"schema_version": 0}')


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sample_id": ""}, "sample_id\n  String should have at least 1 character"),
        ({"sample_id": "x" * 257}, "sample_id\n  String should have at most 256 characters"),
        ({"task_id": "p" * 257}, "task_id\n  String should have at most 256 characters"),
        ({"program": "x" * (MAX_PROGRAM_CHARS + 1)}, f"at most {MAX_PROGRAM_CHARS} characters"),
        ({"task_id": ""}, "task_id\n  String should have at least 1 character"),
        ({"which": "secret"}, "which\n  Input should be 'hidden', 'example' or 'all'"),
        ({"results_stream": "r" * 257}, "results_stream\n  String should have at most 256"),
        ({"evil": 1}, "evil\n  Extra inputs are not permitted"),
        ({"sample_id": 5}, "sample_id\n  Input should be a valid string"),
    ],
)
def test_request_field_limits(fields: dict[str, Any], message: str) -> None:
    payload = {"sample_id": "s", "task_id": "p", "program": "x"} | fields
    with pytest.raises(ValidationError, match=message):
        ExecutionRequest.model_validate(payload)


def test_program_at_the_limit_is_accepted() -> None:
    assert len(request(program="x" * MAX_PROGRAM_CHARS).program) == MAX_PROGRAM_CHARS


@pytest.mark.parametrize(
    "message",
    [
        request(which="all", results_stream="coderl:exec:results:c1"),
        report(),
        DeadLetter(sample_id=None, reason="malformed", payload="\x00\xff{", worker_id="w", deliveries=2),
        StoredProblem(problem=SUM),
    ],
    ids=lambda m: type(m).__name__,
)
def test_round_trip(message: Any) -> None:
    again = type(message).model_validate_json(message.to_wire())
    assert again == message
    assert again.schema_version == SCHEMA_VERSION


def test_messages_are_frozen() -> None:
    with pytest.raises(ValidationError):
        request().sample_id = "other"  # type: ignore[misc]


# --- stream helpers on a real server ---------------------------------------------------------------


def test_ensure_group_is_idempotent_and_starts_at_the_beginning(redis_server: Any) -> None:
    client: redis.Redis = redis_server.client
    streams.submit(client, NAMES, request("before"))  # the stream exists before the group
    for _ in range(3):
        streams.ensure_group(client, NAMES.requests, NAMES.group)
    groups = client.xinfo_groups(NAMES.requests)
    assert [g["name"] for g in groups] == [NAMES.group.encode()]
    read = client.xreadgroup(NAMES.group, "c", {NAMES.requests: ">"}, count=10)
    assert [ExecutionRequest.model_validate_json(f[b"data"]).sample_id for _, f in read[0][1]] == ["before"]
    streams.ensure_group(client, "fresh:stream", NAMES.group)  # creates the stream too
    assert client.type("fresh:stream") == b"stream"


def test_store_and_load_problem(redis_server: Any) -> None:
    client = redis_server.client
    assert streams.load_problem(client, NAMES, "sum") is None
    streams.store_problem(client, NAMES, SUM)
    stored = streams.load_problem(client, NAMES, "sum")
    assert stored is not None and stored.problem == SUM
    assert client.exists("coderl:problem:sum")


def read_one(client: redis.Redis) -> str:
    reply = client.xreadgroup(NAMES.group, "w", {NAMES.requests: ">"}, count=1)
    return reply[0][1][0][0].decode()


def test_publish_once_publishes_exactly_once_and_acks_every_delivery(redis_server: Any) -> None:
    client = redis_server.client
    streams.ensure_group(client, NAMES.requests, NAMES.group)
    first, second = streams.submit(client, NAMES, request()), streams.submit(client, NAMES, request())
    assert read_one(client) == first and read_one(client) == second  # the same sample id, twice
    assert redis_server.pending() == 2
    args = ("coderl:exec:results:c1", first, 3600, 1000)
    assert streams.publish_once(client, NAMES, report(), *args) is True
    assert streams.publish_once(client, NAMES, report(), *args) is False  # a retry of the same entry
    assert (
        streams.publish_once(client, NAMES, report(), "coderl:exec:results:c1", second, 3600, 1000) is False
    )
    assert [r.sample_id for r in redis_server.reports("coderl:exec:results:c1")] == ["s-1"]
    assert client.xlen(NAMES.requests) == 0  # acknowledged and deleted
    assert redis_server.pending() == 0
    assert 3500 < client.ttl(NAMES.done("s-1")) <= 3600
    assert streams.publish_once(client, NAMES, report("s-2"), *args) is True  # another sample id
    assert len(redis_server.reports("coderl:exec:results:c1")) == 2


def test_publish_once_into_a_wrong_type_key_leaves_the_request_to_be_retried(redis_server: Any) -> None:
    client = redis_server.client
    streams.ensure_group(client, NAMES.requests, NAMES.group)
    entry = streams.submit(client, NAMES, request())
    assert read_one(client) == entry
    client.set("not-a-stream", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        streams.publish_once(client, NAMES, report(), "not-a-stream", entry, 3600, 1000)
    assert not client.exists(NAMES.done("s-1"))  # no done marker without a result
    assert redis_server.pending() == 1  # still pending: it is redelivered
    assert streams.publish_once(client, NAMES, report(), NAMES.results, entry, 3600, 1000) is True


def test_dead_letter_moves_the_request_in_one_transaction(redis_server: Any) -> None:
    client = redis_server.client
    streams.ensure_group(client, NAMES.requests, NAMES.group)
    entry = streams.submit(client, NAMES, request())
    assert read_one(client) == entry
    letter = DeadLetter(sample_id="s-1", reason="no result after 3 deliveries", payload="{}", worker_id="w")
    monitor = redis.Redis(port=redis_server.port, socket_timeout=5).monitor()
    with monitor:
        streams.dead_letter(client, NAMES, letter, entry, maxlen=100)
        commands = []
        while not commands or commands[-1] != "EXEC":
            commands.append(monitor.next_command()["command"].split()[0].upper())
    assert commands == ["MULTI", "XADD", "XACK", "XDEL", "EXEC"]
    assert redis_server.dead_letters() == [letter]
    assert client.xlen(NAMES.requests) == 0
    assert redis_server.pending() == 0


def test_queue_stats_counts_length_pending_lag_and_workers(redis_server: Any) -> None:
    client = redis_server.client
    assert streams.queue_stats(client, NAMES) == streams.QueueStats(length=0, pending=0, lag=0, workers=0)
    streams.ensure_group(client, NAMES.requests, NAMES.group)
    entries = [streams.submit(client, NAMES, request(f"s-{i}")) for i in range(5)]
    read_one(client), read_one(client)
    assert streams.queue_stats(client, NAMES) == streams.QueueStats(length=5, pending=2, lag=3, workers=0)
    for worker in ("a", "b"):
        client.hset(NAMES.worker(worker), mapping={"uptime_s": "1"})
        client.expire(NAMES.worker(worker), 10)
    client.set("coderl:workerish", "1")  # not a heartbeat
    assert streams.queue_stats(client, NAMES).workers == 2
    streams.publish_once(client, NAMES, report("s-0"), NAMES.results, entries[0], 60, 1000)
    assert streams.queue_stats(client, NAMES) == streams.QueueStats(length=4, pending=1, lag=3, workers=2)


def test_decode_entry_accepts_bytes_or_str_keys_and_names_a_missing_field() -> None:
    assert streams.decode_entry({b"data": b"{\xff}"}) == "{\ufffd}"
    assert streams.decode_entry({"data": "x"}) == "x"
    with pytest.raises(KeyError, match="stream entry has no 'data' field"):
        streams.decode_entry({b"other": b"x"})
