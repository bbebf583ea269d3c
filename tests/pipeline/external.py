"""A redis-server and an external executor worker (``python -m executor``) for runs that use them
(``execution.external_workers``), as the compose stack would provide."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CODERL_")} | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (deploy/setup-host.sh installs it)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.kill()
    proc.wait(timeout=10)


def start_worker(redis_url: str, prefix: str, worker_id: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A worker on the process backend: these tests are about the run, not about sandboxes."""
    args = [sys.executable, "-m", "executor", "--redis-url", redis_url, "--workers", "2"]
    args += ["--backend", "process", "--set", f"worker_id={worker_id}", f"prefix={prefix}"]
    return subprocess.Popen(args, cwd=REPO, env=environment(), stdout=log, stderr=subprocess.STDOUT)


def train_command(run_dir: Path, redis_url: str, prefix: str, *settings: str) -> list[str]:
    """``coderl train`` in this process's Python, its roles in one process, on external workers."""
    external = [
        f"execution.redis_url={redis_url}",
        "execution.external_workers=true",
        f"execution.prefix={prefix}",
    ]
    command = [sys.executable, "-m", "coderl.cli", "train", "--run-dir", str(run_dir)]
    return [*command, "--set", "use_ray=false", "mode=sync", *external, *settings]
