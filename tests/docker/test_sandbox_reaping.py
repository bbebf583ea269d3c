"""Sandbox containers of dead owners are reaped; a live owner's never (executor/sandbox/owner.py).

Real Docker, a real redis-server and real ``python -m executor`` worker processes. Programs get
60 s of CPU, so a busy sandbox of a killed worker would live on for two minutes by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis

from coderl import streams
from coderl.wire import ExecutionRequest
from executor.config import SandboxConfig, SandboxOwner
from executor.sandbox import owner as ownership
from executor.sandbox.connection import reap_dead_containers
from problems import Problem, TestCase

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SANDBOX_IMAGE = "coderl-sandbox:latest"
LOOP = Problem(task_id="loop", statement="", hidden_tests=[TestCase(kind="stdio", stdin="", stdout="x\n")])


def wait_for(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:g} s: {message}")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "skip"
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc})")
    try:
        client.images.get(SANDBOX_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {SANDBOX_IMAGE} not found: run deploy/build-images.sh", pytrace=False)
    yield client
    client.close()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not on PATH (deploy/setup-host.sh installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=2)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_for(answers, 15, "redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(timeout=10)


class Workers:
    """``python -m executor`` processes on one prefix; all stopped (or killed) at teardown."""

    def __init__(self, url: str, prefix: str, directory: Path) -> None:
        self.url, self.prefix, self.dir = url, prefix, directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = redis.Redis.from_url(url, socket_timeout=10)

    def start(self, worker_id: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "executor", "--redis-url", self.url, "--workers", "2"]
        args += ["--set", f"worker_id={worker_id}", f"prefix={self.prefix}", "drain_timeout_s=0"]
        args += ["executor.limits.timeout_s=60", "executor.sandbox.pin_cpus=false", "claim_idle_ms=600000"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODERL_")}
        with (self.dir / f"{worker_id}.log").open("wb") as log:
            proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[worker_id] = proc
        key = f"{self.prefix}:worker:{worker_id}"

        def ready() -> bool:
            assert proc.poll() is None, (self.dir / f"{worker_id}.log").read_text()[-3000:]
            return bool(self.redis.exists(key))

        wait_for(ready, 120, f"worker {worker_id} sent no heartbeat")
        return proc

    def in_flight(self, worker_id: str) -> float:
        value = self.redis.hget(f"{self.prefix}:worker:{worker_id}", "in_flight")
        return float(value or 0)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.redis.close()


def containers_of(client: Any, worker_id: str) -> set[str]:
    label = {"label": f"{ownership.WORKER}={worker_id}"}
    return {c.id for c in client.containers.list(all=True, sparse=True, filters=label)}


def test_a_new_worker_reaps_a_killed_workers_busy_sandboxes_and_not_a_live_ones(
    engine: Any, redis_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    prefix, dead_id, live_id = f"reap-{tag}", f"dead-{tag}", f"live-{tag}"
    workers = Workers(redis_url, prefix, tmp_path)
    names = streams.StreamNames(prefix=prefix)
    try:
        killed = workers.start(dead_id)
        streams.store_problem(workers.redis, names, LOOP)
        for i in range(2):  # one busy program in each of its two sandboxes
            request = ExecutionRequest(sample_id=f"s{i}", task_id=LOOP.task_id, program="while True: pass\n")
            streams.submit(workers.redis, names, request)
        wait_for(lambda: workers.in_flight(dead_id) == 2, 60, "the worker did not take both programs")
        time.sleep(1.0)  # both programs are running in their sandboxes
        workers.start(live_id)
        live = containers_of(engine, live_id)
        assert len(live) == 2
        leaked = containers_of(engine, dead_id)
        assert len(leaked) == 2
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        time.sleep(5.0)
        # The leak: busy sandboxes outlive their killed worker (until their programs' wall limits).
        assert containers_of(engine, dead_id) == leaked
        started = time.monotonic()
        workers.start(f"new-{tag}")
        # The new worker's pool reaped them before starting its own sandboxes.
        assert containers_of(engine, dead_id) == set(), "the dead worker's sandboxes were not reaped"
        assert containers_of(engine, live_id) == live, "a live worker's sandboxes were removed"
        assert time.monotonic() - started < 60
    finally:
        workers.stop_all()
        for container_id in containers_of(engine, dead_id):  # only on failure: what this test leaked
            try:
                engine.api.remove_container(container_id, force=True)
            except docker.errors.DockerException:
                pass


def _sleeper(client: Any, labels: dict[str, str]) -> str:
    """A container carrying sandbox labels that stands for one of another host's sandboxes."""
    container = client.containers.run(
        SANDBOX_IMAGE,
        ["python3", "-c", "import time; time.sleep(300)"],
        detach=True,
        auto_remove=True,
        network_mode="none",
        labels={ownership.LABEL: "1", **labels},
    )
    return str(container.id)


def test_the_run_level_reaper_judges_other_hosts_sandboxes_by_their_workers_heartbeats(
    engine: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a run does at start or resume (driver/health.py reap_sandboxes): compose workers on
    another host, or in containers of their own, are judged by their heartbeats in the run's Redis."""
    monkeypatch.setattr(ownership, "RECHECK_S", 0.2)
    tag = uuid.uuid4().hex[:6]
    prefix = f"run-{tag}"
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:worker:alive", "1", ex=60)
    old = str(int(time.time() - 2 * ownership.OWNER_START_GRACE_S))
    other_host = {ownership.HOST: "elsewhere", ownership.HOST_KEY: "other-boot/1", ownership.PID: "1"}
    other_host |= {ownership.PID_START: "5", ownership.REDIS: ownership.redacted_url(redis_url)}

    def labels(pool: str, worker: str, prefix: str = prefix, started: str = old) -> dict[str, str]:
        worker_labels = {ownership.WORKER: worker, ownership.PREFIX: prefix, ownership.STARTED: started}
        return other_host | worker_labels | {ownership.OWNER_LABEL: f"{pool}-{tag}"}

    made = {
        "dead": _sleeper(engine, labels("1", "gone")),
        "alive": _sleeper(engine, labels("2", "alive")),
        "young": _sleeper(engine, labels("3", "starting", started=str(int(time.time())))),
        "other run": _sleeper(engine, labels("4", "gone", prefix=f"other-{tag}")),
    }
    try:
        me = SandboxConfig(owner=SandboxOwner(prefix=prefix, redis_url=redis_url))
        reap_dead_containers(engine, me)
        present = {c.id for c in engine.containers.list(all=True, sparse=True)}
        assert {name for name, cid in made.items() if cid in present} == {"alive", "young", "other run"}
    finally:
        client.close()
        for container_id in made.values():
            try:
                engine.api.remove_container(container_id, force=True)
            except docker.errors.DockerException:
                pass
