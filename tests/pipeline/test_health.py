"""A run whose every executor worker died stops with one line, naming the role and how to resume
(driver/health.py), instead of stalling until the learner's timeout."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from .conftest import SMALL_RUN
from .external import REPO, environment, redis_url, start_worker, train_command

__all__ = ["redis_url"]  # a fixture

pytestmark = [pytest.mark.slow, pytest.mark.redis]

GRACE_S = 5
HEARTBEAT_TTL_S = 10  # five heartbeats of the worker's default 2 s


def test_a_run_whose_only_executor_worker_is_killed_stops_with_one_line(
    redis_url: str, tmp_path: Path
) -> None:
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = start_worker(redis_url, "health", "only-worker", worker_log)
    client = redis.Redis.from_url(redis_url)
    run_dir = tmp_path / "run"
    settings = [*SMALL_RUN, "phases.sft_steps=2", f"execution.no_executor_grace_s={GRACE_S}"]
    command = train_command(run_dir, redis_url, "health", *settings)
    run = subprocess.Popen(command, cwd=REPO, env=environment(), stderr=subprocess.PIPE, text=True)
    try:
        # Kill the worker once it has judged a few of the run's programs (the "before" evaluation).
        deadline = time.monotonic() + 300
        while float(client.hget("health:worker:only-worker", "published") or 0) < 1:
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline, "the worker judged none of the run's programs"
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed = time.monotonic()
        _, stderr = run.communicate(timeout=240)
        took = time.monotonic() - killed
    finally:
        for proc in (run, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        worker_log.close()
        client.close()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert run.returncode == 3, stderr[-4000:]
    assert "Traceback" not in stderr, stderr[-4000:]
    error = lines[-1]
    assert error.startswith("coderl train: error: the executor worker(s) died (only-worker;"), error
    assert "no_executor_grace_s" in error and "same `coderl train` command with --resume" in error, error
    assert any("executor worker only-worker stopped heartbeating" in line for line in lines), stderr[-4000:]
    # Noticed within the heartbeat's TTL + the grace + a few polls (plus what the 2 SFT steps take),
    # not after learner.wait_s (240 s here).
    assert took < HEARTBEAT_TTL_S + GRACE_S + 45, took
