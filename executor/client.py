"""Send a batch of programs through running executor workers (Redis streams) and collect results.

Each batch gets a private results stream (``names.client_results(batch_id)``) read with a consumer
group; every result is acknowledged and deleted once read, and the stream is deleted at the end,
so a batch leaves nothing behind but the workers' done markers (they expire). At most
``max_outstanding`` requests are in flight. A request no worker could run (dead-lettered) comes
back as a SANDBOX_ERROR result carrying the dead letter's reason, so a batch never waits forever.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ConfigDict, Field

from coderl import streams
from coderl.execution import ErrorInfo, ExecutionResult
from coderl.outcomes import Verdict
from coderl.redis_client import DEFAULT_OUTAGE_S, auth_error, open_client, redact_url, unavailable_error
from coderl.wire import MAX_PROGRAM_CHARS, DeadLetter, ExecutionReport, ExecutionRequest

from .engine import ExecutionItem, collect_in_order

log = logging.getLogger(__name__)
T = TypeVar("T")
RESULTS_GROUP = "client"
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError is a ConnectionError


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = "redis://localhost:6379/0"
    """redis://[:PASSWORD@]HOST:PORT/DB, or rediss:// (TLS)"""
    prefix: str = "coderl"
    """namespace of the workers' streams (their WorkerConfig.prefix)"""
    max_outstanding: int = Field(default=10_000, ge=1)
    """requests submitted but not yet answered, at most"""
    no_worker_timeout_s: float = Field(default=30.0, gt=0)
    """fail when no worker heartbeat is seen (and no result arrives) for this long"""
    timeout_s: float | None = Field(default=None, gt=0)
    """whole-batch limit (None: none)"""
    redis_down_timeout_s: float = Field(default=DEFAULT_OUTAGE_S, gt=0)
    """keep retrying an unreachable Redis this long before failing (RedisUnavailable, one line)"""
    submit_chunk: int = Field(default=500, ge=1)
    read_count: int = Field(default=1000, ge=1)
    block_ms: int = Field(default=500, ge=10)


class NoWorkersError(RuntimeError):
    """No executor worker is serving the Redis the client talks to."""


class BatchTimeoutError(TimeoutError):
    """The batch did not finish within ``timeout_s``."""


BATCH_ERRORS = (NoWorkersError, BatchTimeoutError, redis.RedisError)
"""what a batch raises when Redis or the workers fail it"""


def redis_url(value: str) -> str:
    """An argparse type: ``redis://HOST:PORT[/DB]`` (or rediss://, unix://)."""
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"expected redis://HOST:PORT[/DB], got {redact_url(value)!r}")
    return value


@dataclass
class Progress:
    total: int = 0
    submitted: int = 0
    received: int = 0
    dead_lettered: int = 0
    """received as SANDBOX_ERROR because a worker dead-lettered the request"""
    duplicates: int = 0
    """results for samples already answered (ignored; there should be none)"""

    @property
    def outstanding(self) -> int:
        return self.submitted - self.received


class RedisExecutionClient:
    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.names = streams.StreamNames(prefix=self.config.prefix)
        # No silent retries inside redis-py: a lost XREADGROUP reply must be seen here (see _read).
        self.redis = open_client(self.config.redis_url, retry=False, socket_timeout=30)
        self.client_id = uuid.uuid4().hex[:12]
        self.progress = Progress()
        self._batches = 0
        self._recover = False  # read our pending results again (after a connection failure)
        self._alive_at = self._next_check = self._next_dead = 0.0
        self._dead_cursor = "0-0"
        self._waiting: dict[str, tuple[int, str]] = {}  # sample id -> (index, request entry id)

    def close(self) -> None:
        self.redis.close()

    def queue_stats(self) -> streams.QueueStats:
        return self._call(streams.queue_stats, self.redis, self.names)

    def execute_many(
        self, items: Sequence[ExecutionItem], on_result: Callable[[int, ExecutionResult], None] | None = None
    ) -> list[ExecutionResult]:
        """Results in input order, like ``Executor.execute_many``."""
        return collect_in_order(self.iter_results(items), len(items), on_result)

    def iter_results(self, items: Sequence[ExecutionItem]) -> Iterator[tuple[int, ExecutionResult]]:
        """``(index, result)`` for every item, as results arrive."""
        too_long = [i for i, item in enumerate(items) if len(item.program) > MAX_PROGRAM_CHARS]
        if too_long:
            raise ValueError(f"programs over {MAX_PROGRAM_CHARS} characters at indices {too_long[:10]}")
        batch = f"{self.client_id}-{self._batches}"
        self._batches += 1
        stream = self.names.client_results(batch)
        self.progress = progress = Progress(total=len(items))
        self._waiting = {}
        started = self._alive_at = time.monotonic()
        self._next_check = self._next_dead = 0.0
        try:  # fail fast when Redis is not there at all (a wrong URL); a refused password: one line
            self.redis.ping()
        except redis.AuthenticationError as exc:
            raise auth_error(self.config.redis_url, exc) from None
        finished = False
        try:
            self._call(streams.ensure_group, self.redis, stream, RESULTS_GROUP)
            seconds, micros = self._call(self.redis.time)
            self._dead_cursor = f"{seconds * 1000 + micros // 1000}-0"
            problems = {item.problem.task_id: item.problem for item in items}
            self._call(self._store_problems, list(problems.values()))
            while progress.received < progress.total:
                now = time.monotonic()
                if self.config.timeout_s is not None and now - started > self.config.timeout_s:
                    raise BatchTimeoutError(
                        f"{progress.total - progress.received} of {progress.total} results missing after "
                        f"{self.config.timeout_s:g} s ({progress.submitted} submitted)"
                    )
                room = min(self.config.max_outstanding - progress.outstanding, self.config.submit_chunk)
                more = progress.submitted < progress.total
                if more and room > 0:
                    self._submit(items, batch, stream, room)
                yield from self._read(stream, wait=not (more and room > 0))
                yield from self._poll_dead()
                self._watch_workers(now)
            finished = True
        finally:
            self._cleanup(stream, [entry for _, entry in self._waiting.values()], finished)

    # --- steps -------------------------------------------------------------------------------
    def _store_problems(self, problems: list[Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for problem in problems:
            streams.store_problem(pipe, self.names, problem)  # type: ignore[arg-type]
        pipe.execute()

    def _submit(self, items: Sequence[ExecutionItem], batch: str, stream: str, count: int) -> None:
        first = self.progress.submitted
        indices = range(first, min(first + count, len(items)))
        requests = [
            ExecutionRequest(
                sample_id=f"{batch}:{index}",
                task_id=items[index].problem.task_id,
                program=items[index].program,
                which=items[index].which,  # type: ignore[arg-type]
                results_stream=stream,
            )
            for index in indices
        ]

        def send() -> list[Any]:  # resent whole after a failure: duplicates are harmless (publish_once)
            pipe = self.redis.pipeline(transaction=False)
            for request in requests:
                pipe.xadd(self.names.requests, {streams.DATA_FIELD: request.to_wire()})
            return pipe.execute()

        for request, index, entry_id in zip(requests, indices, self._call(send), strict=True):
            self._waiting[request.sample_id] = (index, streams.as_text(entry_id))
        self.progress.submitted += len(requests)

    def _read(self, stream: str, wait: bool) -> list[tuple[int, ExecutionResult]]:
        # After a connection failure, first re-read what was delivered to us but never seen.
        start = "0" if self._recover else ">"
        block, count = (self.config.block_ms if wait else None), self.config.read_count
        reply = self._call(
            self.redis.xreadgroup, RESULTS_GROUP, "r", {stream: start}, count=count, block=block
        )
        messages = [message for _, batch in reply or [] for message in batch]
        if start == "0" and not messages:
            self._recover = False
        out: list[tuple[int, ExecutionResult]] = []
        for entry_id, fields in messages:
            try:
                report = ExecutionReport.model_validate_json(streams.decode_entry(fields or {}))
            except (KeyError, ValueError) as exc:
                log.warning("ignoring unreadable result %s: %s", streams.as_text(entry_id), exc)
                continue
            waited = self._waiting.pop(report.sample_id, None)
            if waited is None:
                self.progress.duplicates += 1
                continue
            out.append((waited[0], report.result))
        if messages:
            ids = [streams.as_text(entry_id) for entry_id, _ in messages]
            self._call(self._ack, stream, ids)
            self._alive_at = time.monotonic()
        self.progress.received += len(out)
        return out

    def _ack(self, stream: str, ids: list[str]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(stream, RESULTS_GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()

    def _poll_dead(self) -> list[tuple[int, ExecutionResult]]:
        now = time.monotonic()
        if now < self._next_dead:
            return []
        self._next_dead = now + 1.0
        reply = self._call(self.redis.xread, {self.names.dead: self._dead_cursor}, count=1000)
        out: list[tuple[int, ExecutionResult]] = []
        for entry_id, fields in (message for _, batch in reply or [] for message in batch):
            self._dead_cursor = streams.as_text(entry_id)
            try:
                letter = DeadLetter.model_validate_json(streams.decode_entry(fields or {}))
            except (KeyError, ValueError):
                continue
            waited = self._waiting.pop(letter.sample_id or "", None)
            if waited is not None:
                error = ErrorInfo(type="DeadLetter", message=letter.reason[:2000])
                out.append((waited[0], ExecutionResult(verdict=Verdict.SANDBOX_ERROR, error=error)))
        self.progress.received += len(out)
        self.progress.dead_lettered += len(out)
        return out

    def _watch_workers(self, now: float) -> None:
        interval = min(2.0, self.config.no_worker_timeout_s / 4)
        if now < self._next_check or now - self._alive_at < interval:
            return  # results arrived recently: workers are there
        self._next_check = now + interval
        self._recover = True  # stalled: also look for results delivered to us but never seen
        if self.queue_stats().workers > 0:
            self._alive_at = now
        elif now - self._alive_at >= self.config.no_worker_timeout_s:
            raise NoWorkersError(
                f"no executor workers are serving {redact_url(self.config.redis_url)}: start them with "
                f"`docker compose up` or `python -m executor` (no heartbeat under prefix "
                f"{self.config.prefix!r} for {self.config.no_worker_timeout_s:g} s)"
            )

    def _cleanup(self, stream: str, unanswered: list[str], finished: bool) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for chunk in range(0, len(unanswered), 1000):  # nobody will read their results
                pipe.xdel(self.names.requests, *unanswered[chunk : chunk + 1000])
            # After a failure, results of requests already running may still come: let them expire.
            if finished:
                pipe.delete(stream)
            else:
                pipe.expire(stream, 600)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not clean up batch stream %s: %s", stream, exc)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)``, retried while Redis is unreachable (up to ``redis_down_timeout_s``, then
        ``RedisUnavailable``); a refused password raises ``RedisAuthError`` at once. A step sent
        again after a lost reply is harmless: see ``_submit`` and ``_read``."""
        started = time.monotonic()
        delay = 0.1
        while True:
            try:
                return fn(*args, **kwargs)
            except redis.AuthenticationError as exc:  # a ConnectionError, but never transient
                raise auth_error(self.config.redis_url, exc) from None
            except TRANSIENT as exc:
                self._recover = True
                waited = time.monotonic() - started
                if waited >= self.config.redis_down_timeout_s:
                    raise unavailable_error(self.config.redis_url, waited, exc) from None
                if delay == 0.1:  # once per outage, not per attempt
                    log.warning("redis unavailable (%s: %s); retrying", type(exc).__name__, exc)
                time.sleep(min(delay, self.config.redis_down_timeout_s - waited + 0.01))
                delay = min(delay * 2, 2.0)
