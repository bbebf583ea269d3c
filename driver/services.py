"""Services a training run starts for itself when none is configured: a Redis server kept in the run
directory (append-only, so a resumed run finds its streams again) and executor workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker

__all__ = ["ExecutorThread", "RunRedis", "free_port"]

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunRedis:
    """``redis-server`` on a free local port with its data in ``directory`` (append-only file)."""

    def __init__(self, directory: Path, start_timeout_s: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH: install it (apt-get install -y redis-server, as "
                "deploy/setup-host.sh does) or set execution.redis_url to a running Redis"
            )
        # Absolute: redis-server changes into --dir before it opens --logfile and --pidfile.
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        pidfile = directory / "redis.pid"
        _stop_orphan(pidfile)
        self.port = free_port()
        self.log_file = directory / "redis.log"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        args += [
            "--pidfile",
            str(pidfile),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.log_file),
        ]
        # Its own session: a Ctrl-C in the terminal reaches the driver, which stops the workers
        # first and this server last, so no worker sees Redis vanish under it.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready(start_timeout_s)
        log.info("started redis-server for the run at %s (data in %s)", self.url, directory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_ready(self, timeout_s: float) -> None:
        probe = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:  # not listening yet, or still loading its append-only file
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes its append-only file and exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _stop_orphan(pidfile: Path) -> None:
    """A killed run leaves its redis-server running; the resumed run stops it before reusing its data."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"redis-server" not in cmdline:
        return
    log.warning("stopping redis-server %d left behind by a previous run of this directory", pid)
    os.kill(pid, signal.SIGTERM)  # it writes its append-only file and exits
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class ExecutorThread:
    """An executor service worker running in a thread of this process (the in-process pipeline)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.worker = ExecutorWorker(config)
        self.thread = threading.Thread(
            target=self.worker.run, name=f"executor-{config.worker_id}", daemon=True
        )
        self.thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.worker.stop()
        self.thread.join(timeout=timeout_s)
        self.worker.executor.close()
