"""coderl/redis_client.py: URLs with passwords, redaction, bounded retries, one-line errors, and a
batch through a password-protected redis-server (marker redis)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coderl.config import dump_config
from coderl.redis_client import (
    RedisAuthError,
    RedisUnavailable,
    open_client,
    redact_url,
    redis_failure,
)
from driver.services import ExecutorThread, free_port
from driver.train_config import TrainConfig
from executor.client import ClientConfig, RedisExecutionClient
from executor.config import ExecutorConfig
from executor.engine import ExecutionItem
from executor.service_config import WorkerConfig
from problems import load_packaged_humaneval

PASSWORD = "s3cret-Pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PASSWORD}@h:6379/0", "redis://:***@h:6379/0"),
        (f"rediss://user:{PASSWORD}@h:6380/1", "rediss://user:***@h:6380/1"),
        (f"unix://:{PASSWORD}@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
        (f"redis://h:1/0?password={PASSWORD}&db=1", "redis://h:1/0?password=***&db=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_saved_config_never_holds_the_password() -> None:
    url = f"redis://:{PASSWORD}@10.0.0.5:6379/0"
    config = TrainConfig.model_validate({"execution": {"redis_url": url, "external_workers": True}})
    dumped = dump_config(config)
    assert PASSWORD not in dumped and "redis_url: redis://:***@10.0.0.5:6379/0" in dumped


def test_an_unreachable_redis_raises_one_line_after_the_outage_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    client = open_client(url, outage_s=0.8)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(RedisUnavailable) as failed:
        client.set("k", "v")
    assert 0.8 <= time.monotonic() - started < 5
    message = str(failed.value)
    assert "\n" not in message and "redis://:***@127.0.0.1" in message and "--resume" in message
    assert PASSWORD not in message + caplog.text
    assert redis_failure(RuntimeError("wrapped")) is None
    wrapper = RuntimeError("a Ray task error")
    wrapper.cause = failed.value  # type: ignore[attr-defined]
    assert redis_failure(wrapper) is failed.value


@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    port = free_port()
    # requirepass on stdin, as the compose image does: never on a command line
    process = subprocess.Popen(
        [binary, "-", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    process.stdin.write(f'requirepass "{PASSWORD}"\n'.encode())
    process.stdin.close()
    probe = open_client(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", outage_s=10)
    probe.ping()
    probe.close()
    yield port
    process.kill()
    process.wait(timeout=10)


@pytest.mark.redis
def test_a_batch_runs_through_a_password_protected_redis(
    protected_redis: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected_redis}/0"
    executor = ExecutorConfig(workers=2, sandbox={"backend": "process"})  # type: ignore[arg-type]
    worker = ExecutorThread(WorkerConfig(redis_url=url, prefix="pw", worker_id="w-pw", executor=executor))
    client = RedisExecutionClient(ClientConfig(redis_url=url, prefix="pw"))
    try:
        problems = load_packaged_humaneval()[:2]
        items = [ExecutionItem(p, p.solutions[0], "hidden") for p in problems]
        results = client.execute_many(items)
        assert [r.passed for r in results] == [True, True]
    finally:
        client.close()
        worker.stop()
    assert PASSWORD not in caplog.text


@pytest.mark.redis
@pytest.mark.parametrize("given", ["wrong-password", None])
def test_a_refused_password_is_one_line_at_once(
    protected_redis: int, given: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    url = (
        f"redis://:{given}@127.0.0.1:{protected_redis}/0"
        if given
        else f"redis://127.0.0.1:{protected_redis}/0"
    )
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(RedisAuthError) as failed:
        open_client(url, outage_s=30).ping()
    assert time.monotonic() - started < 2  # no retry loop
    message = str(failed.value)
    assert "\n" not in message and "refused the password" in message and "CODERL_REDIS_URL" in message
    assert "wrong-password" not in message + caplog.text
    # The executor client says the same, also without retrying.
    client = RedisExecutionClient(ClientConfig(redis_url=url, redis_down_timeout_s=30))
    with pytest.raises(RedisAuthError):
        client.queue_stats()
    assert time.monotonic() - started < 4
