"""The run's watch on its roles: executor workers by their heartbeats in Redis, and the one-line
errors a run ends with when a role is gone for good.

Every executor worker (a Ray actor, a thread of the driver, a compose container) refreshes
``{prefix}:worker:{id}`` (coderl/streams.py) every ``heartbeat_s`` with a TTL of five heartbeats.
``HealthWatcher`` polls those keys from a thread of its own: a worker whose key expires or stops
changing is reported once, by name, with the capacity left; the number alive goes to the metrics
(``health/executors_alive``, ``health/executor_sandboxes``); and when NO worker is alive while
requests wait, for longer than ``execution.no_executor_grace_s``, it stops the run: the main thread
(blocked in the learner's wait for results, or in an evaluation) gets ``RunStopped``, which
driver/train.py turns into one line and exit code 3, naming the role and how to resume.

Not watched here: the learner and the samplers, whose calls fail in the loop (driver/loop.py turns
an actor that died beyond Ray's restarts into ``RoleDied``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from coderl import streams
from learner.checkpoint import run_dir_failure

__all__ = ["HealthWatcher", "RoleDied", "RunStopped", "reap_sandboxes", "resume_hint", "run_failure"]

log = logging.getLogger(__name__)

POLL_S = 2.0
STOP_SIGNAL = signal.SIGUSR1


class RoleDied(RuntimeError):
    """A role of the run is gone for good; the message names it (driver/train.py adds how to resume)."""


class RunStopped(BaseException):
    """Raised in the main thread when the watcher stops the run. A BaseException, so that no
    ``except Exception`` on the way (a sampler's failure handling, say) takes it for a role's error."""


def resume_hint(run_dir: Path) -> str:
    return f"fix it, then run the same `coderl train` command with --resume (run directory {run_dir})"


def run_failure(exc: BaseException, run_dir: Path) -> str | None:
    """The one line a run ends with when a role died for good or its directory cannot be written
    (full, read-only): what happened and how to resume; None for any other error."""
    if isinstance(exc, (RunStopped, RoleDied)):
        return f"{exc}; {resume_hint(run_dir)}"
    return run_dir_failure(exc, run_dir)


@dataclass
class _Worker:
    uptime: str
    changed: float
    """when this watcher last saw the worker's heartbeat change (monotonic)"""
    sandboxes: int


class HealthWatcher:
    """Polls executor heartbeats (see the module doc); ``failure`` is set when it stops the run."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        grace_s: float,
        poll_s: float = POLL_S,
        stale_s: float = 15.0,
    ) -> None:
        self.names = streams.StreamNames(prefix=prefix)
        self.grace_s, self.poll_s, self.stale_s = grace_s, poll_s, stale_s
        self.client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=10)
        self.workers: dict[str, _Worker] = {}
        self.lost: dict[str, float] = {}
        """workers reported lost -> when they last heartbeated (monotonic)"""
        self.none_since: float | None = None
        self.failure: RoleDied | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident
        self._previous_handler: Any = None

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> HealthWatcher:
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(STOP_SIGNAL, self._raise_stopped)
        self._thread = threading.Thread(target=self._watch, name="health", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 15)
        if self._previous_handler is not None:
            signal.signal(STOP_SIGNAL, self._previous_handler)
            self._previous_handler = None
        self.client.close()

    def _raise_stopped(self, *_: object) -> None:
        if self.failure is not None and not self._stop.is_set():
            raise RunStopped(str(self.failure))

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                failure = self.check()
            except redis.RedisError as exc:  # Redis outages are the Redis watch's to judge
                log.debug("health check skipped: %s", exc)
                continue
            if failure is not None:
                self.failure = failure
                if self._previous_handler is not None and self._main is not None:
                    signal.pthread_kill(self._main, STOP_SIGNAL)  # wakes a blocked main thread
                return

    # -- one poll --------------------------------------------------------------------------------

    def check(self, now: Callable[[], float] = time.monotonic) -> RoleDied | None:
        """Read every heartbeat once; warn about workers lost since the last poll; the error that
        stops the run when no worker has been alive for ``grace_s`` while requests wait."""
        at = now()
        seen: set[str] = set()
        for key in self.client.scan_iter(match=self.names.worker("*"), count=1000):
            worker_id = streams.as_text(key).removeprefix(self.names.worker(""))
            values = {streams.as_text(k): streams.as_text(v) for k, v in self.client.hgetall(key).items()}
            if not values:
                continue  # expired between the scan and the read
            self._update(worker_id, values, at)
            if at - self.workers[worker_id].changed <= self.stale_s:
                seen.add(worker_id)
        for worker_id, worker in self.workers.items():
            if worker_id not in seen and worker_id not in self.lost:
                self.lost[worker_id] = worker.changed
                self._warn_lost(worker_id, at, seen)
        for worker_id in seen:
            self.lost.pop(worker_id, None)
        return self._judge(at, seen)

    def _update(self, worker_id: str, values: dict[str, str], at: float) -> None:
        uptime = values.get("uptime_s", "")
        started = float(values.get("pool_sandboxes_started", 0) or 0)
        recycled = float(values.get("pool_sandbox_recycles", 0) or 0)
        worker = self.workers.get(worker_id)
        if worker is None or worker.uptime != uptime:
            self.workers[worker_id] = _Worker(uptime, at, max(int(started - recycled), 0))

    def _warn_lost(self, worker_id: str, at: float, alive: set[str]) -> None:
        sandboxes = sum(self.workers[w].sandboxes for w in alive)
        log.warning(
            "executor worker %s stopped heartbeating %.0f s ago: %d of %d workers left (%d sandboxes)",
            worker_id,
            at - self.workers[worker_id].changed,
            len(alive),
            len(self.workers),
            sandboxes,
        )

    def _judge(self, at: float, alive: set[str]) -> RoleDied | None:
        if alive:
            self.none_since = None
            return None
        length, _, _ = streams.group_backlog(self.client, self.names.requests, self.names.group)
        if length == 0:  # nothing waits for a worker: no worker is needed right now
            self.none_since = None
            return None
        if self.none_since is None:
            self.none_since = at
        if at - self.none_since < self.grace_s:
            return None
        if self.workers:
            last = max(self.workers.values(), key=lambda w: w.changed)
            gone = ", ".join(sorted(self.workers))
            what = f"the executor worker(s) died ({gone}; the last heartbeat {at - last.changed:.0f} s ago)"
        else:
            what = f"no executor worker ever heartbeated on {self.names.worker('*')}"
        return RoleDied(
            f"{what}, and {length} execution request(s) waited {at - self.none_since:.0f} s "
            "(execution.no_executor_grace_s) with no worker to run them: restart the executor workers "
            f"(docker compose up -d, or coderl worker --redis-url URL --set prefix={self.names.prefix})"
        )

    def metrics(self) -> dict[str, float]:
        """What the last poll saw, for the run's metrics."""
        alive = [w for w_id, w in self.workers.items() if w_id not in self.lost]
        return {
            "health/executors_alive": float(len(alive)),
            "health/executor_sandboxes": float(sum(w.sandboxes for w in alive)),
        }


def reap_sandboxes(sandbox: Any, redis_url: str, prefix: str) -> int:
    """At a run's start or resume: remove the sandbox containers of dead owners (a killed driver's
    workers, a killed compose worker of this Redis and prefix) on this host's Docker engine, if it
    has one (executor/sandbox/owner.py says what is and is not removed). Never fails the run."""
    if sandbox.backend != "docker":
        return 0
    from executor.config import SandboxOwner
    from executor.sandbox.connection import reap_dead_containers

    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - no engine here: the workers' own hosts reap theirs
        log.debug("no Docker engine to reap sandboxes on: %s", exc)
        return 0
    try:
        me = sandbox.model_copy(update={"owner": SandboxOwner(prefix=prefix, redis_url=redis_url)})
        return reap_dead_containers(client, me)
    finally:
        client.close()
