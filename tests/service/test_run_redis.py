"""The redis-server a run starts for itself (driver/services.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from driver.services import RunRedis

pytestmark = pytest.mark.redis


def test_a_relative_run_directory_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`coderl train --run-dir runs/x`: redis-server changes into its --dir before opening the log
    file and pidfile, so relative paths would point nowhere and it would exit at once."""
    monkeypatch.chdir(tmp_path)
    server = RunRedis(Path("runs") / "x" / "redis")
    try:
        assert redis.Redis.from_url(server.url).ping()
        assert (tmp_path / "runs" / "x" / "redis" / "redis.pid").is_file()
    finally:
        server.stop()
