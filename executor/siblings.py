"""Bring back a compose executor worker that was killed (``docker kill``, the OOM killer, a crash
of its process by SIGKILL), from its sibling workers.

Docker's restart policy does not restart a container stopped by ``docker kill``: the engine marks
it as stopped by hand, like ``docker stop``, so one killed worker stays down and the service runs at
reduced capacity. Each worker of a compose service (``restart_killed_siblings``, env
CODERL_RESTART_KILLED_SIBLINGS, set in docker-compose.yml) therefore looks every ``CHECK_EVERY_S``
at the containers of its own compose project and service (labels com.docker.compose.project and
com.docker.compose.service, found from its own container, whose id its hostname is) and starts a
sibling that EXITED WITH CODE 137 (SIGKILL) at least ``SETTLE_S`` ago and was not removed.

Guaranteed:
  - a sibling stopped gracefully (``docker compose stop``, ``docker stop``, scale-down: SIGTERM,
    the worker drains and exits 0, or 143 without its handler) is left alone, as is one that
    exited with any other code (Docker's ``unless-stopped`` policy restarts those itself);
  - only containers of the same compose project and service are touched, never sandboxes, Redis or
    other projects;
  - each worker starts one container at most once per ``MIN_RESTART_INTERVAL_S``, so a worker that
    is killed again at once (an OOM loop) is retried at that pace, not in a tight loop. Two
    siblings starting the same container is harmless: starting a running container does nothing.
Not guaranteed:
  - if every worker of the service is killed, none is left to restart the others: the training
    run's health watcher (driver/health.py) then stops the run and says so;
  - a graceful stop whose drain outlasted ``stop_grace_period`` ends in SIGKILL (137) too, and is
    restarted if a sibling is still running then (the drain is bounded at 60 s, the grace is 90 s);
  - a deliberate ``docker kill`` of one worker is treated as a crash: stop a worker with
    ``docker compose stop`` (or scale down), not with ``docker kill``;
  - nothing runs when the worker is not a compose container (no compose labels): it logs that once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

__all__ = ["CHECK_EVERY_S", "SiblingRestarter"]

log = logging.getLogger(__name__)

PROJECT_LABEL, SERVICE_LABEL = "com.docker.compose.project", "com.docker.compose.service"
KILLED = 137
"""128 + SIGKILL: ``docker kill``, the OOM killer, or the end of a stop's grace period"""
CHECK_EVERY_S = 5.0
SETTLE_S = 2.0
"""a container that exited this recently may be on its way to removal (scale-down, down)"""
MIN_RESTART_INTERVAL_S = 30.0


class SiblingRestarter:
    """Starts the killed containers of this container's compose project and service."""

    def __init__(self, client: Any, project: str, service: str, me: str, counters: Counter[str]) -> None:
        self.client = client
        self.project, self.service, self.me = project, service, me
        self.counters = counters
        """the worker's counters: ``siblings_restarted`` shows in its /metrics"""
        self.started_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_this_container(cls, counters: Counter[str]) -> SiblingRestarter | None:
        """The restarter of the compose container this process runs in; None (logged) when it does
        not run in one, or the Docker engine cannot tell."""
        import docker  # the executor's own dependency (sandboxes); loaded only when asked for

        hostname = socket.gethostname()
        try:
            client = docker.from_env(timeout=30)
            me = client.containers.get(hostname)
        except docker.errors.DockerException as exc:
            log.info("restart_killed_siblings: not in a container the engine knows (%s); off", exc)
            return None
        labels = me.labels or {}
        project, service = labels.get(PROJECT_LABEL), labels.get(SERVICE_LABEL)
        if not me.id.startswith(hostname) or not project or not service:
            log.info("restart_killed_siblings: this container is not part of a compose service; off")
            client.close()
            return None
        log.info("restarting killed containers of compose service %s/%s", project, service)
        return cls(client, project, service, me.id, counters)

    def check(self, now: float | None = None) -> list[str]:
        """Start every killed sibling due for it; the names of those started."""
        now = time.monotonic() if now is None else now
        filters = {
            "label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={self.service}"],
            "status": "exited",
        }
        started = []
        for container in self.client.containers.list(all=True, filters=filters):
            if container.id == self.me or not self._due(container, now):
                continue
            state = container.attrs.get("State", {})
            log.warning(
                "sibling worker container %s was killed (exit code %d%s); starting it again",
                container.name,
                KILLED,
                ", out of memory" if state.get("OOMKilled") else "",
            )
            self.started_at[container.id] = now
            try:
                container.start()
            except Exception as exc:  # noqa: BLE001 - removed meanwhile, engine busy: next check
                log.warning("starting %s failed: %s", container.name, exc)
                continue
            self.counters["siblings_restarted"] += 1
            started.append(container.name)
        return started

    def _due(self, container: Any, now: float) -> bool:
        state = container.attrs.get("State", {})
        if state.get("ExitCode") != KILLED:
            return False
        if now - self.started_at.get(container.id, -MIN_RESTART_INTERVAL_S) < MIN_RESTART_INTERVAL_S:
            return False
        return _exited_for(state) >= SETTLE_S

    # -- the thread ----------------------------------------------------------------------------------

    def start(self) -> SiblingRestarter:
        self._thread = threading.Thread(target=self._loop, name="sibling-restarter", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - an engine hiccup must not end the worker
                log.warning("checking sibling containers failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.client.close()


def _exited_for(state: dict[str, Any]) -> float:
    """Seconds since the container exited (by the engine's clock); 0 when unknown."""
    finished = str(state.get("FinishedAt") or "")
    try:  # RFC 3339 with nanoseconds: keep microseconds for fromisoformat
        stamp, _, fraction = finished.rstrip("Z").partition(".")
        when = datetime.fromisoformat(f"{stamp}.{(fraction or '0')[:6]}+00:00")
    except ValueError:
        return 0.0
    return max(0.0, time.time() - when.timestamp())
