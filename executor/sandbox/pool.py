"""A pool of sandboxes: one job at a time per sandbox, recycled when contaminated, after a
fault, or after ``max_runs_per_container`` runs."""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import uuid
from collections import Counter
from typing import Any

from ..config import SandboxConfig
from ..harness.protocol import Op, RequestKey
from .connection import (
    Connection,
    DockerConnection,
    ProcessConnection,
    SandboxFault,
    SandboxUnavailable,
    reap_dead_containers,
    remove_stale_containers,
)
from .image import DIGEST_LABEL, harness_digest
from .owner import owner_labels

log = logging.getLogger(__name__)


class Sandbox:
    """One sandbox server, the core it is pinned to (None: not pinned) and its run count."""

    def __init__(self, connection: Connection, core: int | None) -> None:
        self.connection, self.core = connection, core
        self.runs = 0

    def run(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.runs += 1
        return self.connection.request({RequestKey.OP: Op.RUN, **job}, timeout)


def docker_client(config: SandboxConfig) -> Any:
    """A client of a reachable Docker engine holding this checkout's sandbox image; otherwise
    SandboxUnavailable saying what to do (start the engine, build the image)."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
            f"cannot reach the Docker engine ({exc}): start it (deploy/setup-host.sh does) or set "
            "DOCKER_HOST; sandbox.backend='process' runs without isolation, for trusted code only"
        ) from None
    try:
        image = client.images.get(config.image)
    except docker.errors.ImageNotFound:
        raise SandboxUnavailable(
            f"sandbox image {config.image!r} not found: build it with deploy/build-images.sh"
        ) from None
    found, expected = (image.labels or {}).get(DIGEST_LABEL), harness_digest()
    if config.check_harness_digest and found != expected:
        raise SandboxUnavailable(
            f"sandbox image {config.image!r} carries harness {found}, this checkout has {expected}: "
            "rebuild it with deploy/build-images.sh (or set sandbox.check_harness_digest=false)"
        )
    return client


class SandboxPool:
    def __init__(self, config: SandboxConfig, size: int) -> None:
        self.config, self.size = config, size
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.counters: Counter[str] = Counter()
        self._client: Any = None
        self._idle: queue.Queue[Sandbox] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        if config.backend == "docker":
            self._client = docker_client(config)
            self._labels = owner_labels(config.owner, self.owner)
            # Before starting ours: a dead owner's busy containers hold cores until their programs'
            # wall limits, and containers it created but never started hold memory for good.
            self.counters["sandboxes_reaped"] = reap_dead_containers(self._client, config)
            _warn_if_io_uring_enabled()
        else:
            log.warning(
                "sandbox backend 'process' is WEAKER than 'docker': programs share this host's "
                "filesystem, network and user, and escaped daemons survive. Use it only for trusted code."
            )
        cores = self._cores() if config.pin_cpus else []
        slots = [cores[i % len(cores)] if cores else None for i in range(size)]
        starters = [threading.Thread(target=self._add_new, args=(core,)) for core in slots]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        if self._idle.qsize() < size:
            self.close()
            raise SandboxFault(f"could only start {self._idle.qsize()} of {size} sandboxes")

    def _cores(self) -> list[int]:
        """The cores to pin this pool's sandboxes to, in the order to use them: the Docker
        engine's (its host's) cores, those holding the fewest sandboxes of other pools first (ties
        in random order, so pools that start together spread out); on the process backend, this
        process's cores."""
        if self.config.backend != "docker":
            return sorted(os.sched_getaffinity(0))
        cores = list(range(int(self._client.info().get("NCPU") or 1)))
        load = dict.fromkeys(cores, 0)
        # sparse: labels only, no per-container inspect (containers come and go meanwhile)
        for container in self._client.containers.list(filters={"label": DockerConnection.LABEL}, sparse=True):
            pinned = (container.attrs.get("Labels") or {}).get(DockerConnection.CORE_LABEL, "")
            if pinned.isdigit() and int(pinned) in load:
                load[int(pinned)] += 1
        random.shuffle(cores)
        return sorted(cores, key=load.__getitem__)

    def _connect(self, core: int | None) -> Connection:
        if self.config.backend == "docker":
            return DockerConnection(self._client, self.config, self._labels, core)
        return ProcessConnection(self.config, core)

    def _add_new(self, core: int | None) -> None:
        try:
            self._idle.put(Sandbox(self._connect(core), core))
            self.counters["sandboxes_started"] += 1
        except Exception as exc:  # noqa: BLE001 - counted; the caller decides
            log.error("could not start a sandbox: %s", exc)
            self.counters["sandbox_start_failures"] += 1

    def acquire(self) -> Sandbox:
        return self._idle.get()

    def release(self, box: Sandbox) -> None:
        """Return a healthy sandbox; one that has run enough is replaced."""
        if box.runs >= self.config.max_runs_per_container:
            self.recycle(box)
        else:
            self._idle.put(box)

    def recycle(self, box: Sandbox) -> None:
        self.counters["sandbox_recycles"] += 1
        box.connection.close()
        if self._closed:
            return
        try:
            self._idle.put(Sandbox(self._connect(box.core), box.core))
        except Exception as exc:
            log.error("could not replace a sandbox: %s", exc)
            self.counters["sandbox_start_failures"] += 1
            if self._idle.qsize() == 0:
                raise SandboxUnavailable(f"no sandbox available: {exc}") from exc

    def close(self) -> None:
        """Idle sandboxes are told to exit and remove themselves (auto-remove); only when some were
        busy (an interrupted batch) are this pool's containers removed by force, here."""
        self._closed = True
        idle = 0
        while True:
            try:
                self._idle.get_nowait().connection.close(force=False)
                idle += 1
            except queue.Empty:
                break
        if self._client is not None and idle < self.size:
            remove_stale_containers(self._client, self.owner)


def _warn_if_io_uring_enabled() -> None:
    """Docker's default seccomp profile (20.10) lets sandboxes call io_uring; the host can refuse it."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as handle:
            enabled = handle.read().strip() == "0"
    except OSError:
        return  # older kernel, or the engine is remote: nothing this host can tell
    if enabled:
        log.warning(
            "io_uring is enabled on this host: sandboxed programs can reach it. "
            "Run deploy/setup-host.sh or `sysctl -w kernel.io_uring_disabled=1`."
        )
