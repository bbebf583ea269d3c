"""Who owns a sandbox container, written on it as labels, and the reaper that removes the
containers of owners that are dead.

A sandbox container normally ends with its owner: its harness exits when the attach stream closes
(StdinOnce), and the container removes itself (auto_remove). That fails when the harness is busy
(a program runs until its wall limit before the harness reads its stdin again), when a container
was created but not started, or when the engine lost the stream. So every pool labels its
containers with its owner, and every pool (a worker starting) and every training run (starting or
resuming) reaps the containers of owners that are dead.

An owner is DEAD when either
  - it ran on this host (same hostname, kernel boot and PID namespace) and its process is gone, or
    the pid now belongs to a process that started at another time (the pid was reused); or
  - it was a worker with a heartbeat (``{prefix}:worker:{id}``, coderl/streams.py) in the SAME
    Redis and prefix as the reaper's, its pool started more than ``OWNER_START_GRACE_S`` ago (a
    starting worker heartbeats only once its sandboxes are up), and its heartbeat key is missing on
    two reads ``RECHECK_S`` apart (a Redis that just came back has not been refreshed yet).
Guaranteed: a container whose owning process is alive on this host is never removed, whatever its
heartbeat; nor one whose owner cannot be judged (another host and another Redis or prefix, or no
heartbeat: a bare Executor; or containers from before these labels): those are left alone.
Not guaranteed: containers of a dead owner on another host whose Redis or prefix differs from the
reaper's stay until a worker of their own namespace (or their owner's host) starts; two hosts that
share one engine and each reach a DIFFERENT Redis under the same URL and prefix would look like one
namespace (the label holds the URL without its password, not the server's identity).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import SandboxOwner

log = logging.getLogger(__name__)

LABEL = "org.coderl.sandbox"
OWNER_LABEL = f"{LABEL}.owner"
"""the pool's own id, ``{pid}-{random}`` (existing tools filter on it)"""
HOST, HOST_KEY, PID, PID_START = (f"{LABEL}.{k}" for k in ("host", "host_key", "pid", "pid_start"))
STARTED, WORKER, PREFIX, REDIS = (f"{LABEL}.{k}" for k in ("started", "worker", "prefix", "redis"))
OWNER_START_GRACE_S = 180.0
"""a pool younger than this may belong to a worker that has not heartbeated yet"""
RECHECK_S = 3.0

Heartbeat = Callable[[str, str], bool]
"""(prefix, worker id) -> whether that worker's heartbeat key exists"""


def redacted_url(url: str) -> str:
    """A Redis URL without its user and password (labels are readable by anyone on the engine)."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/0", "", ""))


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19].decode() if len(fields) > 19 else None


def _host_key() -> str:
    """This kernel boot and PID namespace: pids mean the same thing only where these match."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""  # not Linux: no pid test, only heartbeats
    return f"{boot}/{namespace}"


def owner_labels(owner: SandboxOwner, pool_id: str) -> dict[str, str]:
    """The labels of every container of the pool ``pool_id`` started by this process."""
    pid = os.getpid()
    return {
        OWNER_LABEL: pool_id,
        HOST: socket.gethostname(),
        HOST_KEY: _host_key(),
        PID: str(pid),
        PID_START: _start_ticks(pid) or "",
        STARTED: f"{time.time():.0f}",
        WORKER: owner.worker_id,
        PREFIX: owner.prefix,
        REDIS: redacted_url(owner.redis_url),
    }


def _local_owner_dead(labels: Mapping[str, str]) -> bool | None:
    """True/False when the owner ran on this host (pid test); None when it did not, or cannot tell."""
    key = labels.get(HOST_KEY, "")
    pid = labels.get(PID, "")
    if not key or key != _host_key() or labels.get(HOST) != socket.gethostname() or not pid.isdigit():
        return None
    return _start_ticks(int(pid)) != labels.get(PID_START)


def _judged_by_heartbeat(labels: Mapping[str, str], me: SandboxOwner, now: float) -> bool:
    """Whether the owner is a worker of the reaper's namespace, old enough to have heartbeated."""
    started = labels.get(STARTED, "")
    return bool(
        me.redis_url
        and labels.get(WORKER)
        and labels.get(PREFIX) == me.prefix
        and labels.get(REDIS) == redacted_url(me.redis_url)
        and started.isdigit()
        and now - int(started) > OWNER_START_GRACE_S
    )


def dead_owners(
    containers: list[Any], me: SandboxOwner, heartbeat: Heartbeat | None, recheck_s: float | None = None
) -> dict[str, str]:
    """Pool id -> why its owner is dead, among the owners of ``containers`` (see the module doc)."""
    dead: dict[str, str] = {}
    silent: dict[str, tuple[str, str]] = {}  # pool id -> (prefix, worker) without a heartbeat
    now = time.time()
    for container in containers:
        labels = container.attrs.get("Labels") or {}
        pool = labels.get(OWNER_LABEL, "")
        if not pool or pool in dead or pool in silent:
            continue
        local = _local_owner_dead(labels)
        if local is not None:
            if local:
                dead[pool] = f"process {labels[PID]} on {labels[HOST]} is gone"
            continue
        if heartbeat is not None and _judged_by_heartbeat(labels, me, now):
            if not heartbeat(labels[PREFIX], labels[WORKER]):
                silent[pool] = (labels[PREFIX], labels[WORKER])
    if silent:
        time.sleep(RECHECK_S if recheck_s is None else recheck_s)
        for pool, (prefix, worker) in silent.items():
            if not heartbeat(prefix, worker):  # type: ignore[misc]
                dead[pool] = f"worker {worker} has no heartbeat ({prefix}:worker:{worker} expired)"
    return dead


def redis_heartbeat(redis_url: str) -> tuple[Heartbeat, Callable[[], None]]:
    """A heartbeat test on ``redis_url`` and a function that closes its connection."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def alive(prefix: str, worker: str) -> bool:
        return bool(client.exists(f"{prefix}:worker:{worker}"))

    return alive, client.close


def reap_dead_owners(client: Any, me: SandboxOwner, remove: Callable[[Any], None]) -> int:
    """Remove (with ``remove``) every sandbox container on ``client``'s engine whose owner is dead;
    how many. Never raises for an engine or Redis that fails: it is logged and nothing is removed."""
    try:
        # sparse: labels only, no per-container inspect (containers come and go meanwhile)
        containers = client.containers.list(all=True, sparse=True, filters={"label": LABEL})
    except Exception as exc:  # noqa: BLE001 - reaping is best effort; the caller goes on
        log.warning("cannot list sandbox containers to reap: %s", exc)
        return 0
    heartbeat, close = redis_heartbeat(me.redis_url) if me.redis_url else (None, lambda: None)
    try:
        dead = dead_owners(containers, me, heartbeat)
    except Exception as exc:  # noqa: BLE001 - e.g. Redis unreachable: judge nothing by heartbeat
        log.warning("cannot read worker heartbeats to reap sandboxes (%s); pid test only", exc)
        dead = dead_owners(containers, me, None)
    finally:
        close()
    reaped = [c for c in containers if (c.attrs.get("Labels") or {}).get(OWNER_LABEL) in dead]
    for pool, reason in dead.items():
        count = sum((c.attrs.get("Labels") or {}).get(OWNER_LABEL) == pool for c in reaped)
        log.warning("removing %d sandbox(es) of pool %s, whose owner is dead: %s", count, pool, reason)
    for container in reaped:
        remove(container)
    return len(reaped)
