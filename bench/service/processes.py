"""The processes the executor service benchmark starts: a private redis-server and fleets of worker
processes fed through it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import remove_sandbox_containers
from coderl import streams
from executor.config import ExecutorConfig, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
"""the repository root: the workers run there, so ``python -m`` finds the project's packages"""
WORKER_ENV_OVERRIDES = (
    "CODERL_REDIS_URL",
    "CODERL_EXECUTOR_WORKERS",
    "CODERL_HEALTH_PORT",
    "CODERL_WORKER_ID",
    "CODERL_PREFIX",
)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cli": ("the worker as shipped (python -m executor)", ()),
    "no-prefetch": (
        "the shipped worker without read-ahead (prefetch=0: one request in flight per sandbox)",
        ("prefetch=0",),
    ),
}
"""worker variants, name: (description, ``WorkerConfig`` settings on top of the shipped defaults);
each is the shipped worker configured through its public settings"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except OSError:
        pass


class RedisServer:
    """A private, non-persistent redis-server on a free local port."""

    def __init__(self, workdir: Path) -> None:
        self.proc: subprocess.Popen[Any] | None = None
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir),
                 "--logfile", str(workdir / f"redis-{self.port}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            self.url = f"redis://127.0.0.1:{self.port}/0"
            client = redis.Redis.from_url(self.url)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    client.ping()
                    client.close()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
            stop_process(self.proc)
        raise RuntimeError("could not start redis-server on a free port")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5.0)


def _worker_env() -> dict[str, str]:
    """This environment without the worker's own overrides (its settings come from the command)."""
    return {k: v for k, v in os.environ.items() if k not in WORKER_ENV_OVERRIDES}


def worker_command(url: str, per_process: int, backend: str, settings: list[str], stub: bool) -> list[str]:
    """``python -m executor`` as shipped with ``settings``, or with ``stub`` the shipped worker
    around a zero-cost stand-in for the executor (bench/service/stub_worker.py)."""
    if stub:
        return [sys.executable, "-m", "bench.service.stub_worker", url, str(per_process), *settings]
    return [
        sys.executable, "-m", "executor", "--log-level", "WARNING", "--redis-url", url,
        "--workers", str(per_process), "--backend", backend, "--set", *settings,
    ]  # fmt: skip


class Fleet:
    """P worker processes on one stream prefix, each the shipped worker in one of ``VARIANTS``:
    ``python -m executor``, or with ``stub`` the worker around a stub executor."""

    def __init__(
        self,
        url: str,
        prefix: str,
        processes: int,
        per_process: int,
        backend: str,
        logdir: Path,
        variant: str = "cli",
        stub: bool = False,
    ) -> None:
        self.logdir = logdir
        self.names = streams.StreamNames(prefix=prefix)
        self.ids = [f"bench-{variant}-w{i}" for i in range(processes)]
        self.procs: list[subprocess.Popen[Any]] = []
        self.logs: list[Path] = []
        self.started = time.perf_counter()
        for worker_id in self.ids:
            settings = [f"prefix={prefix}", f"worker_id={worker_id}", "drain_timeout_s=5"]
            settings += VARIANTS[variant][1]
            command = worker_command(url, per_process, backend, settings, stub)
            log = logdir / f"{prefix.replace(':', '_')}-{worker_id}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    command, cwd=ROOT, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def owner_prefixes(self) -> list[str]:
        """A sandbox pool's owner label is ``{pid}-{token}``."""
        return [f"{pid}-" for pid in self.pids]

    def ready(self, client: redis.Redis) -> bool:
        """Every worker has written its heartbeat (it does so after its sandbox pool started)."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                hint = ""
                if "harness" in tail and "rebuild" in tail:
                    hint = "\n(the sandbox image is stale: run deploy/build-images.sh)"
                raise RuntimeError(f"worker exited with {proc.returncode} before it was ready:\n{tail}{hint}")
        return all(client.exists(self.names.worker(w)) for w in self.ids)

    def terminate(self) -> None:
        """SIGTERM every worker still running (it drains, then exits)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass

    def stop(self) -> int:
        """SIGTERM all (they drain in parallel), SIGKILL stragglers, remove leftover sandboxes."""
        self.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return remove_sandbox_containers(self.owner_prefixes())


def executor_config(sandboxes: int, backend: str) -> ExecutorConfig:
    return ExecutorConfig(workers=sandboxes, sandbox=SandboxConfig(backend=backend))
