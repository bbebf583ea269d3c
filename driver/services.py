"""Services a training run starts for itself when none is configured: a Redis server kept in the run
directory (append-only, so a resumed run finds its streams again; restarted when it dies) and
executor workers.
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

from coderl.redis_client import RedisAuthError, RedisUnavailable
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker

__all__ = ["ExecutorThread", "RunRedis", "free_port"]

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunRedis:
    """``redis-server`` on a free local port with its data in ``directory`` (append-only file),
    supervised: a watcher thread restarts a server that dies (kill -9, OOM killer) on the same port
    and directory, from its append-only file, until ``stop()``.

    The append-only file is fsynced before each reply (``appendfsync always``), so a server killed
    at any moment comes back with every write a client was told had happened: no acknowledged
    result, request or acknowledgement is lost or replayed. Clients retry through the restart
    (coderl/redis_client.py); the run stops only if Redis stays away longer than
    execution.redis_outage_s.
    """

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
        self.start_timeout_s = start_timeout_s
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        self.args += [
            "--pidfile",
            str(pidfile),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.log_file),
        ]
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # held while (re)starting: stop() never races a restart
        try:
            self.process = self._start()
        except RuntimeError:
            self._stopping.set()
            raise
        self._watcher = threading.Thread(target=self._watch, name="run-redis-watcher", daemon=True)
        self._watcher.start()
        log.info("started redis-server for the run at %s (data in %s)", self.url, directory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> subprocess.Popen[bytes]:
        # Its own session: a Ctrl-C in the terminal reaches the driver, which stops the workers
        # first and this server last, so no worker sees Redis vanish under it.
        try:
            process = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as exc:  # the binary gone (an upgrade), no memory or descriptors to fork:
            # a RuntimeError, so the watcher logs it and tries again instead of dying
            raise RuntimeError(f"cannot run {self.args[0]}: {exc}") from exc
        try:
            self._wait_ready(process)
        except RuntimeError:
            _end(process)
            raise
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        probe = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:  # not listening yet, or still loading its append-only file
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                    raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
                time.sleep(0.05)
        finally:
            probe.close()

    def _watch(self) -> None:
        """Restart the server whenever it exits, until ``stop()``."""
        delay = 0.5
        while True:
            status = self.process.wait()
            with self._lock:
                if self._stopping.is_set():
                    return
                log.warning(
                    "redis-server of the run (port %d) exited with %s; restarting it from its "
                    "append-only file (clients retry meanwhile)",
                    self.port,
                    _exit_status(status),
                )
                try:
                    self.process = self._start()
                    self.restarts += 1
                    delay = 0.5
                    log.warning("redis-server of the run is back on port %d", self.port)
                    continue
                except RuntimeError as exc:  # e.g. the port was taken meanwhile: try again
                    log.error("restarting redis-server failed: %s", " ".join(str(exc).split())[:500])
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        # The watcher first: a server stopped on purpose must not be restarted.
        self._stopping.set()
        with self._lock:
            _end(self.process)
        watcher = getattr(self, "_watcher", None)
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: redis flushes its append-only file and exits
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _exit_status(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


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
        self.thread = threading.Thread(target=self._serve, name=f"executor-{config.worker_id}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.worker.run()
        except (RedisUnavailable, RedisAuthError) as exc:  # the roles stop the run with the same error
            log.error("executor worker %s stopped: %s", self.worker.config.worker_id, exc)

    def stop(self, timeout_s: float = 30.0) -> None:
        self.worker.stop()
        self.thread.join(timeout=timeout_s)
        self.worker.executor.close()
