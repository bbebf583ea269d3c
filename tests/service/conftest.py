"""Fixtures for the executor service: a real ``redis-server`` and real worker processes.

``redis_factory(appendonly=...)`` starts redis-server on a free port in a temporary directory
(``--save ""``; with ``appendonly`` on, ``--appendfsync always``) and kills it at teardown; its
``restart()`` shuts it down gracefully (SHUTDOWN) and starts it again on the same port and
directory. ``workers.start(url, ...)`` runs ``python -m executor`` (docker backend unless told
otherwise) and waits for its heartbeat; teardown stops every worker (SIGTERM, then SIGKILL) and
removes the sandbox containers of killed ones. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from coderl import streams
from coderl.wire import DeadLetter, ExecutionReport

REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")
NAMES = streams.StreamNames()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, message: str | Callable[[], str]) -> Any:
    """Poll ``condition`` until it is truthy (and return it); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:g} s: {message() if callable(message) else message}")
        time.sleep(0.05)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RedisServer:
    def __init__(self, directory: Path, appendonly: bool) -> None:
        self.dir, self.appendonly, self.port = directory, appendonly, free_port()
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self.client = redis.Redis(port=self.port, socket_timeout=30)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--logfile", str(self.log), "--appendonly", "yes" if self.appendonly else "no"]
        args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.RedisError:  # not up yet, or still loading its data
                return False

        wait_for(answers, 15, lambda: f"redis-server on {self.port} did not start:\n{tail(self.log)}")
        probe.close()

    def restart(self) -> None:
        """Graceful SHUTDOWN (the append-only file is flushed), then start on the same port and dir."""
        assert self.proc is not None
        try:
            self.client.shutdown()
        except redis.ConnectionError:
            pass  # the server closed the connection as it went down
        self.proc.wait(timeout=15)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def entries(self, stream: str) -> list[tuple[str, str]]:
        """Every entry of ``stream`` as ``(id, data)``, read in pages."""
        out, start = [], "-"
        while True:
            page = self.client.xrange(stream, min=start, max="+", count=1000)
            out += [(eid.decode(), streams.decode_entry(fields)) for eid, fields in page]
            if len(page) < 1000:
                return out
            start = "(" + page[-1][0].decode()

    def reports(self, stream: str) -> list[ExecutionReport]:
        return [ExecutionReport.model_validate_json(data) for _, data in self.entries(stream)]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(data) for _, data in self.entries(NAMES.dead)]

    def pending(self, stream: str = NAMES.requests, group: str = NAMES.group) -> int:
        try:
            return int(self.client.xpending(stream, group)["pending"])
        except redis.ResponseError:  # no such stream or group
            return 0


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH")
    servers: list[RedisServer] = []

    def make(appendonly: bool = False) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        servers.append(RedisServer(directory, appendonly))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


class WorkerProcess:
    def __init__(self, popen: subprocess.Popen[bytes], worker_id: str, log: Path, backend: str) -> None:
        self.popen, self.worker_id, self.log, self.backend = popen, worker_id, log, backend
        self.health_port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)


class Workers:
    """Starts ``python -m executor`` processes; stops them all at teardown."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[WorkerProcess] = []

    def start(
        self,
        url: str,
        *,
        backend: str = "docker",
        slots: int = 2,
        claim_idle_ms: int = 3000,
        worker_id: str | None = None,
        health: bool = False,
        settings: tuple[str, ...] = (),
        ready_timeout: float = 120,
    ) -> WorkerProcess:
        worker_id = worker_id or f"w{len(self.procs)}"
        log = self.dir / f"{worker_id}-{len(self.procs)}.log"
        overrides = [f"worker_id={worker_id}", f"claim_idle_ms={claim_idle_ms}", "drain_timeout_s=10"]
        args = [sys.executable, "-m", "executor", "--redis-url", url, "--workers", str(slots)]
        args += ["--backend", backend, "--set", *overrides, *settings]
        health_port = free_port() if health else None
        if health_port is not None:
            args += ["--health-port", str(health_port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODERL_")}
        env["PYTHONUNBUFFERED"] = "1"
        client = redis.Redis.from_url(url, socket_timeout=10)
        client.delete(NAMES.worker(worker_id))  # a killed worker of this id left its heartbeat behind
        with log.open("wb") as out:
            popen = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = WorkerProcess(popen, worker_id, log, backend)
        proc.health_port = health_port
        self.procs.append(proc)

        def ready() -> bool:
            if not proc.alive():
                pytest.fail(f"worker {worker_id} exited with {popen.returncode}:\n{proc.tail()}")
            return bool(client.exists(NAMES.worker(worker_id)))

        wait_for(ready, ready_timeout, lambda: f"worker {worker_id} sent no heartbeat:\n{proc.tail()}")
        client.close()
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)
        self._remove_containers([p.pid for p in self.procs if p.backend == "docker"])

    @staticmethod
    def _remove_containers(pids: list[int]) -> None:
        """Sandbox containers of these (dead) worker processes: owner labels start with the pid."""
        if not pids:
            return
        import docker

        client = docker.from_env(timeout=60)
        owners = tuple(f"{pid}-" for pid in pids)
        label = "org.coderl.sandbox.owner"
        for container in client.containers.list(all=True, sparse=True, filters={"label": label}):
            if (container.attrs.get("Labels") or {}).get(label, "").startswith(owners):
                try:
                    container.remove(force=True)
                except docker.errors.DockerException:
                    pass  # already going away


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip when the Docker engine is unreachable (a missing or stale image fails in the worker)."""
    import docker

    try:
        docker.from_env(timeout=30).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "skip"
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc})")


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for
