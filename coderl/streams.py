"""Redis stream and key names in one place, and the typed operations on them.

Layout (prefix "coderl" by default):
  {prefix}:exec:requests        stream of ExecutionRequest; consumer group "executors"
  {prefix}:exec:results         stream of ExecutionReport (or a request's own results_stream)
  {prefix}:exec:dead            stream of DeadLetter
  {prefix}:problem:{id}         StoredProblem JSON, written once by producers
  {prefix}:exec:done:{sample}   marker that makes result publication idempotent (with a TTL)
  {prefix}:worker:{id}          a worker's heartbeat and counters (hash, with a TTL)

Memory stays bounded: a request is deleted from its stream when it is acknowledged, results are
deleted by their consumer when acknowledged, and both result and dead-letter streams are capped
(approximately) at a configurable length as a last resort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from .wire import DeadLetter, ExecutionReport, ExecutionRequest, StoredProblem

DATA_FIELD = "data"

# Publish the result and acknowledge the request atomically, once per sample id.
# KEYS: done marker, results stream, requests stream. ARGV: ttl, result json, maxlen, group, entry id.
_PUBLISH_ONCE = """
local first = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
if first then
  local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
  if type(added) == 'table' and added.err then  -- e.g. WRONGTYPE: no marker without a result
    redis.call('DEL', KEYS[1])
    return added
  end
end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
if first then return 1 else return 0 end
"""


@dataclass(frozen=True)
class StreamNames:
    prefix: str = "coderl"
    group: str = "executors"

    @property
    def requests(self) -> str:
        return f"{self.prefix}:exec:requests"

    @property
    def results(self) -> str:
        return f"{self.prefix}:exec:results"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:exec:dead"

    def problem(self, task_id: str) -> str:
        return f"{self.prefix}:problem:{task_id}"

    def done(self, sample_id: str) -> str:
        return f"{self.prefix}:exec:done:{sample_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def client_results(self, client_id: str) -> str:
        return f"{self.prefix}:exec:results:{client_id}"


@dataclass(frozen=True)
class QueueStats:
    length: int
    """entries in the requests stream (not yet acknowledged)"""
    pending: int
    """delivered to a worker, not yet acknowledged"""
    lag: int
    """not yet delivered to any worker"""
    workers: int
    """workers with a live heartbeat"""


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def store_problem(client: redis.Redis, names: StreamNames, problem: Any) -> None:
    client.set(names.problem(problem.task_id), StoredProblem(problem=problem).to_wire())


def load_problem(client: redis.Redis, names: StreamNames, task_id: str) -> StoredProblem | None:
    raw = client.get(names.problem(task_id))
    return None if raw is None else StoredProblem.model_validate_json(raw)


def submit(client: redis.Redis, names: StreamNames, request: ExecutionRequest) -> str:
    """Add ``request`` to the requests stream; its entry id."""
    entry = client.xadd(names.requests, {DATA_FIELD: request.to_wire()})
    return as_text(entry)


def publish_once(
    client: redis.Redis,
    names: StreamNames,
    report: ExecutionReport,
    results_stream: str,
    entry_id: str,
    ttl_s: int,
    maxlen: int,
) -> bool:
    """Publish ``report`` unless this sample already has a result, and acknowledge its request.
    True if this call published it."""
    keys = [names.done(report.sample_id), results_stream, names.requests]
    args = [ttl_s, report.to_wire(), maxlen, names.group, entry_id]
    return bool(client.eval(_PUBLISH_ONCE, len(keys), *keys, *args))


def dead_letter(
    client: redis.Redis, names: StreamNames, letter: DeadLetter, entry_id: str, maxlen: int
) -> None:
    """Move a request to the dead-letter stream with its reason (atomically)."""
    pipe = client.pipeline(transaction=True)
    pipe.xadd(names.dead, {DATA_FIELD: letter.to_wire()}, maxlen=maxlen, approximate=True)
    pipe.xack(names.requests, names.group, entry_id)
    pipe.xdel(names.requests, entry_id)
    pipe.execute()


def group_backlog(client: redis.Redis, stream: str, group: str) -> tuple[int, int, int]:
    """(length, pending, lag) of a stream and one of its consumer groups: entries in the stream,
    entries delivered to the group but not acknowledged, and entries not yet delivered to it.
    Pending and lag are 0 when the group does not exist yet."""
    length = int(client.xlen(stream))
    try:
        for info in client.xinfo_groups(stream):
            if info.get("name") in (group, group.encode()):
                pending = int(info.get("pending") or 0)
                lag = info.get("lag")  # None when Redis cannot tell (entries deleted mid-stream)
                return length, pending, int(lag) if lag is not None else max(length - pending, 0)
    except redis.ResponseError:
        pass
    return length, 0, 0


def queue_stats(client: redis.Redis, names: StreamNames) -> QueueStats:
    length, pending, lag = group_backlog(client, names.requests, names.group)
    workers = sum(1 for _ in client.scan_iter(match=names.worker("*"), count=1000))
    return QueueStats(length=length, pending=pending, lag=lag, workers=workers)


def decode_entry(fields: dict[Any, Any]) -> str:
    """The JSON payload of a stream entry (bytes or str keys), or raise KeyError."""
    value = fields.get(DATA_FIELD, fields.get(DATA_FIELD.encode()))
    if value is None:
        raise KeyError(f"stream entry has no {DATA_FIELD!r} field")
    return as_text(value)


def as_text(value: Any) -> str:
    """A Redis reply item (bytes or str, e.g. an entry id or a payload) as text."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
