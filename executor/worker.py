"""An executor service worker: requests from a Redis stream, results back, nothing lost.

Delivery guarantees (see coderl/streams.py for the layout):
  - a request is acknowledged only in the same atomic step that publishes its result, and that
    step publishes at most one result per sample id, so retries never duplicate results;
  - requests of a worker that died (kill -9) stay pending and are reclaimed by any worker after
    ``claim_idle_ms``; a live worker refreshes the idle time of its in-flight requests;
  - a request that keeps failing (SANDBOX_ERROR every time) is dead-lettered after
    ``max_deliveries``; a malformed one at once, with the reason; neither stops the worker;
  - SIGTERM stops reading, lets in-flight programs finish for ``drain_timeout_s`` and hands the
    rest back (their idle time is set so another worker reclaims them immediately);
  - Redis going away is waited out (each step is tried again, /readyz says not ready meanwhile);
    after ``redis_outage_s`` without Redis the worker stops with ``RedisUnavailable`` (one line),
    and a refused password stops it at once with ``RedisAuthError``. A step sent again after a lost
    reply does no harm: a request read but never seen stays pending and is reclaimed, and the
    publication is once per sample id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from typing import Any

import redis
from pydantic import ValidationError

from coderl import streams
from coderl.outcomes import Verdict
from coderl.problem import Problem
from coderl.redis_client import auth_error, open_client, unavailable_error
from coderl.wire import DeadLetter, ExecutionReport, ExecutionRequest

from .engine import Executor
from .service_config import WorkerConfig

log = logging.getLogger(__name__)
PAYLOAD_KEEP = 2000
HAND_BACK_IDLE_MS = 86_400_000
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError is a ConnectionError
STOP_HINT = "the worker stops: start Redis again, then the worker (compose restarts it by itself)"


class ExecutorWorker:
    def __init__(self, config: WorkerConfig, executor: Executor | None = None) -> None:
        self.config = config
        self.names = streams.StreamNames(prefix=config.prefix)
        # No retries inside redis-py: the loop retries whole steps, and knows Redis is down meanwhile.
        self.redis = open_client(config.redis_url, config.redis_outage_s, retry=False, socket_timeout=30)
        self.executor = executor or Executor(config.executor)
        # Requests in flight: one running per sandbox plus ``prefetch`` read ahead, so a sandbox that
        # finishes starts its next program at once instead of waiting for the next read.
        sandboxes = self.config.executor.workers
        self.slots = threading.BoundedSemaphore(sandboxes * (1 + self.config.prefetch))
        self.running = threading.BoundedSemaphore(sandboxes)
        self.in_flight: set[str] = set()  # entry ids running or read ahead (heartbeated)
        self.lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.problems: OrderedDict[str, Problem] = OrderedDict()
        self.stopping = threading.Event()
        self.started = time.time()
        self.last_loop = time.monotonic()
        self.redis_ok = False
        self._next_heartbeat = self._next_reclaim = 0.0
        self._claim_cursor = "0-0"
        self._down_since: float | None = None

    # --- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        log.info("worker %s serving %s", self.config.worker_id, self.names.requests)
        try:
            while not self.stopping.is_set():
                self.last_loop = time.monotonic()
                try:
                    self._step()
                    self._redis_back()
                except redis.AuthenticationError as exc:  # a ConnectionError, but never transient
                    raise auth_error(self.config.redis_url, exc) from None
                except TRANSIENT as exc:
                    self._redis_down(exc)
                    self.stopping.wait(1.0)
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    streams.ensure_group(self.redis, self.names.requests, self.names.group)
        finally:
            self._drain()

    def _redis_down(self, exc: Exception) -> None:
        """Note a failed step; past ``redis_outage_s`` without Redis, raise ``RedisUnavailable``."""
        self.redis_ok = False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("redis unavailable (%s: %s); retrying", type(exc).__name__, exc)
        if now - self._down_since > self.config.redis_outage_s:
            raise unavailable_error(self.config.redis_url, now - self._down_since, exc, STOP_HINT) from None

    def _redis_back(self) -> None:
        if self._down_since is not None:
            log.warning("redis reachable again after %.1f s", time.monotonic() - self._down_since)
        self._down_since = None
        self.redis_ok = True

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            streams.ensure_group(self.redis, self.names.requests, self.names.group)
            self._heartbeat()
            # In-flight requests must be refreshed well within claim_idle_ms, whatever heartbeat_s.
            self._next_heartbeat = now + min(self.config.heartbeat_s, self.config.claim_idle_ms / 3000)
        if not self.slots.acquire(timeout=self.config.block_ms / 1000):
            return
        try:  # the slot only reserves capacity for the read; a Redis error must not leak it
            entries = []
            if now >= self._next_reclaim:
                entries = self._reclaim()
                if not entries:  # while there is something to reclaim, go on at once
                    self._next_reclaim = now + self.config.claim_idle_ms / 4000
            if not entries:
                entries = self._read_new()
        finally:
            self.slots.release()
        for entry_id, fields, deliveries in entries:
            self._dispatch(entry_id, fields, deliveries)

    def _read_new(self) -> list[tuple[str, dict[Any, Any], int]]:
        reply = self.redis.xreadgroup(
            self.names.group,
            self.config.worker_id,
            {self.names.requests: ">"},
            count=1,
            block=self.config.block_ms,
        )
        return [(streams.as_text(eid), fields, 1) for _, messages in reply or [] for eid, fields in messages]

    def _reclaim(self) -> list[tuple[str, dict[Any, Any], int]]:
        reply = self.redis.xautoclaim(
            self.names.requests,
            self.names.group,
            self.config.worker_id,
            min_idle_time=self.config.claim_idle_ms,
            start_id=self._claim_cursor,
            count=1,
        )
        self._claim_cursor = streams.as_text(reply[0])  # scan the whole PEL over successive calls
        claimed = [(streams.as_text(eid), fields) for eid, fields in reply[1] if fields]
        result = []
        for entry_id, fields in claimed:
            info = self.redis.xpending_range(self.names.requests, self.names.group, entry_id, entry_id, 1)
            deliveries = int(info[0]["times_delivered"]) if info else 1
            self.counters["reclaimed"] += 1
            log.info("reclaimed %s (delivery %d)", entry_id, deliveries)
            result.append((entry_id, fields, deliveries))
        return result

    # --- one request -------------------------------------------------------------------------
    def _dispatch(self, entry_id: str, fields: dict[Any, Any], deliveries: int) -> None:
        payload = ""
        try:
            payload = streams.decode_entry(fields)
            request = ExecutionRequest.model_validate_json(payload)
        except (KeyError, ValidationError, ValueError) as exc:
            self._dead(entry_id, None, f"malformed request: {str(exc)[:500]}", payload, deliveries)
            return
        stream = request.results_stream or self.names.results
        if stream != self.names.results and not stream.startswith(f"{self.names.results}:"):
            reason = f"results_stream {stream!r} is outside {self.names.results}[:*]"
            self._dead(entry_id, request.sample_id, reason, payload, deliveries)
            return
        if deliveries > self.config.max_deliveries:
            reason = f"no result after {deliveries - 1} deliveries (sandbox errors or worker crashes)"
            self._dead(entry_id, request.sample_id, reason, payload, deliveries)
            return
        try:
            problem = self._problem(request.task_id)
        except (ValueError, redis.ResponseError) as exc:  # ValidationError is a ValueError
            reason = f"stored problem {request.task_id!r} is unreadable: {str(exc)[:500]}"
            self._dead(entry_id, request.sample_id, reason, payload, deliveries)
            return
        if problem is None:
            reason = f"unknown problem id {request.task_id!r}: store it before submitting"
            self._dead(entry_id, request.sample_id, reason, payload, deliveries)
            return
        self.slots.acquire()
        with self.lock:
            self.in_flight.add(entry_id)
        # A daemon thread per request (the slots bound them): one stuck in a sandbox after the drain
        # handed its request back must not keep the process from exiting.
        args = (entry_id, request, problem, deliveries)
        threading.Thread(target=self._execute, args=args, name="exec", daemon=True).start()

    def _execute(self, entry_id: str, request: ExecutionRequest, problem: Problem, deliveries: int) -> None:
        try:
            with self.running:
                started = time.time()
                result = self.executor.execute(problem, request.program, request.which)
            if result.verdict == Verdict.SANDBOX_ERROR:
                # Not ours to score: leave it pending; it is redelivered, then dead-lettered.
                self.counters["sandbox_errors"] += 1
                return
            report = ExecutionReport(
                sample_id=request.sample_id,
                task_id=request.task_id,
                result=result,
                worker_id=self.config.worker_id,
                deliveries=deliveries,
                queued_s=max(0.0, started - request.created_at),
                exec_s=time.time() - started,
            )
            self._publish(entry_id, report, request.results_stream or self.names.results)
        except Exception:
            log.exception("executing %s failed; it will be redelivered", entry_id)
            self.counters["worker_errors"] += 1
        finally:
            with self.lock:
                self.in_flight.discard(entry_id)
            self.slots.release()

    def _publish(self, entry_id: str, report: ExecutionReport, results_stream: str) -> None:
        delay, deadline = 0.2, time.monotonic() + self.config.redis_outage_s
        while True:
            try:
                first = streams.publish_once(
                    self.redis,
                    self.names,
                    report,
                    results_stream,
                    entry_id,
                    self.config.result_ttl_s,
                    self.config.results_maxlen,
                )
                self.counters["published" if first else "duplicates_suppressed"] += 1
                self.counters[f"verdict:{report.result.verdict.value}"] += 1
                return
            except redis.AuthenticationError as exc:
                log.error("%s", auth_error(self.config.redis_url, exc))
                return  # the request stays pending: another worker runs it again
            except TRANSIENT as exc:
                if time.monotonic() > deadline:  # the request stays pending: it is reclaimed and run again
                    log.error("result of %s not published: redis unavailable (%s)", report.sample_id, exc)
                    return
                log.warning("publishing %s: %s; retrying", report.sample_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dead(self, entry_id: str, sample_id: str | None, reason: str, payload: str, deliveries: int) -> None:
        log.warning("dead-lettering %s: %s", entry_id, reason)
        letter = DeadLetter(
            sample_id=sample_id,
            reason=reason,
            payload=payload[:PAYLOAD_KEEP],
            deliveries=deliveries,
            worker_id=self.config.worker_id,
        )
        streams.dead_letter(self.redis, self.names, letter, entry_id, self.config.dead_maxlen)
        self.counters["dead_lettered"] += 1

    def _problem(self, task_id: str) -> Problem | None:
        if task_id in self.problems:
            self.problems.move_to_end(task_id)
            return self.problems[task_id]
        stored = streams.load_problem(self.redis, self.names, task_id)
        if stored is None:
            return None
        self.problems[task_id] = stored.problem
        if len(self.problems) > self.config.problem_cache:
            self.problems.popitem(last=False)
        return stored.problem

    # --- liveness, heartbeats, shutdown ------------------------------------------------------
    def _heartbeat(self) -> None:
        with self.lock:
            in_flight = list(self.in_flight)
        if in_flight:  # keep our requests from looking abandoned
            self.redis.xclaim(
                self.names.requests, self.names.group, self.config.worker_id, 0, in_flight, justid=True
            )
        key = self.names.worker(self.config.worker_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={k: str(v) for k, v in self.metrics().items()})
        pipe.expire(key, max(int(self.config.heartbeat_s * 5), 5))
        pipe.execute()

    def metrics(self) -> dict[str, float]:
        uptime = max(time.time() - self.started, 1e-9)
        counters = dict(self.counters)  # a copy: execution threads add keys while we iterate
        executed = sum(v for k, v in counters.items() if k.startswith("verdict:"))
        values: dict[str, float] = {k.replace(":", "_"): float(v) for k, v in counters.items()}
        values.update({f"pool_{k}": float(v) for k, v in dict(self.executor.pool.counters).items()})
        values["executor_sandbox_retries"] = float(self.executor.counters.get("sandbox_retries", 0))
        values.update(
            {"uptime_s": uptime, "programs_per_s": executed / uptime, "in_flight": float(len(self.in_flight))}
        )
        return values

    def stop(self) -> None:
        self.stopping.set()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            unfinished = list(self.in_flight)
        if unfinished:
            log.warning("handing back %d unfinished requests", len(unfinished))
            try:  # make them look abandoned so another worker takes them now
                self.redis.xclaim(
                    self.names.requests,
                    self.names.group,
                    self.config.worker_id,
                    0,
                    unfinished,
                    idle=HAND_BACK_IDLE_MS,  # past any worker's claim_idle_ms, not just ours
                    justid=True,
                )
            except redis.RedisError as exc:
                log.error("could not hand back requests (they are reclaimed after claim_idle_ms): %s", exc)
        try:
            self.redis.delete(self.names.worker(self.config.worker_id))
        except redis.RedisError:
            pass
        self.executor.close()
        log.info("worker %s stopped: %s", self.config.worker_id, dict(self.counters))
