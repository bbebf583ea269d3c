"""Redis going away under a run: the run's own redis-server is restarted from its append-only file
(driver/services.py RunRedis) and every role retries through the gap (coderl/redis_client.py);
Redis gone for longer than the outage limit stops with one line.

Real redis-server processes, real executor workers (process backend: the worker's logic is under
test, not the sandbox), the training channel's own publish and read paths.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from coderl import streams
from coderl.outcomes import Verdict
from coderl.redis_client import RedisUnavailable, open_client
from coderl.rollouts import RolloutReader, TrainStreams, publish_rollouts
from coderl.wire import SampledProgram
from driver.services import ExecutorThread, RunRedis
from executor.client import ClientConfig, RedisExecutionClient
from executor.config import ExecutorConfig
from executor.service_config import WorkerConfig
from problems import load_packaged_humaneval

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 48
ROUND = 6


def worker_config(url: str, prefix: str, outage_s: float = 60.0) -> WorkerConfig:
    executor = ExecutorConfig(workers=2, sandbox={"backend": "process"})  # type: ignore[arg-type]
    return WorkerConfig(
        redis_url=url,
        prefix=prefix,
        worker_id=f"w-{prefix}",
        executor=executor,
        claim_idle_ms=2000,
        drain_timeout_s=5,
        redis_outage_s=outage_s,
    )


def rollout(index: int, problem: Any) -> SampledProgram:
    return SampledProgram(
        sample_id=f"{problem.task_id}/v1/s{index}",
        task_id=problem.task_id,
        group_id=f"{problem.task_id}/v1",
        policy_version=1,
        program=problem.solutions[0],
        prompt_token_ids=[5],
        token_ids=[7],
        logprobs=[-0.5],
        sampling_logprobs=[-0.4],
        finished=True,
    )


def test_the_runs_redis_is_restarted_and_stop_is_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RunRedis(tmp_path / "redis")
    try:
        client = open_client(server.url, 30)
        client.set("kept", "1")
        first = server.process.pid
        with caplog.at_level(logging.WARNING):
            os.kill(first, signal.SIGKILL)
            assert client.get("kept") == b"1"  # waits through the restart; the write survived
        assert server.restarts == 1 and server.process.pid != first
        assert any("exited with signal SIGKILL" in r.getMessage() for r in caplog.records)
        client.close()
    finally:
        server.stop()
    assert server.process.poll() is not None
    time.sleep(0.5)
    assert server.restarts == 1 and not server._watcher.is_alive()


def test_kill_9_of_the_runs_redis_mid_workload_answers_every_sample_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Samplers publish rounds, a worker executes them, the learner's reader collects results; the
    redis-server is killed with SIGKILL halfway. Every sample comes back once, none twice."""
    caplog.set_level(logging.WARNING)
    server = RunRedis(tmp_path / "redis")
    prefix = f"t{uuid.uuid4().hex[:6]}"
    channel = TrainStreams(streams.StreamNames(prefix=prefix), "run")
    problems = load_packaged_humaneval()[:3]
    worker = ExecutorThread(worker_config(server.url, prefix))
    publisher, reader_client = open_client(server.url, 60), open_client(server.url, 60)
    try:
        for problem in problems:
            streams.store_problem(publisher, channel.names, problem)
        reader = RolloutReader(reader_client, channel)
        samples = [rollout(i, problems[i % len(problems)]) for i in range(SAMPLES)]
        published, seen, killed_pid = 0, Counter[str](), None
        deadline = time.monotonic() + 180
        while sum(seen.values()) < SAMPLES and time.monotonic() < deadline:
            if published < SAMPLES:  # one sampler round at a time, like the pipeline
                publish_rollouts(publisher, channel, samples[published : published + ROUND], ttl_s=600)
                published += ROUND
            for delivery in reader.read(count=10, block_ms=200):
                seen[delivery.report.sample_id] += 1
                assert delivery.report.result.verdict == Verdict.PASSED, delivery.report.result
                assert delivery.sample is not None
            if killed_pid is None and sum(seen.values()) >= SAMPLES // 3:
                killed_pid = server.process.pid
                os.kill(killed_pid, signal.SIGKILL)
        time.sleep(1.0)  # a duplicate would come right after: there must be none
        for delivery in reader.read(count=100, block_ms=500):
            seen[delivery.report.sample_id] += 1
        assert killed_pid is not None and server.restarts == 1
        assert set(seen) == {s.sample_id for s in samples}, f"missing {SAMPLES - len(seen)}"
        assert all(n == 1 for n in seen.values()), {k: n for k, n in seen.items() if n != 1}
        assert any("restarting it from its append-only file" in r.getMessage() for r in caplog.records)
    finally:
        worker.stop()
        publisher.close()
        reader_client.close()
        server.stop()


def test_redis_gone_longer_than_the_limit_stops_a_batch_with_one_line(
    tmp_path: Path, redis_factory: Any
) -> None:
    server = redis_factory()
    client = RedisExecutionClient(ClientConfig(redis_url=server.url, redis_down_timeout_s=1.5, prefix="gone"))
    server.stop()  # killed, and nobody restarts it
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as failed:  # any step of a batch: here its queue read
        client.queue_stats()
    assert 1.0 <= time.monotonic() - started < 10
    message = str(failed.value)
    assert "\n" not in message and f"127.0.0.1:{server.port}" in message and "unreachable for" in message


def test_a_worker_stops_after_the_limit_and_says_why(tmp_path: Path, redis_factory: Any) -> None:
    server = redis_factory()
    worker = ExecutorThread(worker_config(server.url, "gone", outage_s=1.0))
    time.sleep(0.5)
    server.stop()
    worker.thread.join(timeout=30)
    assert not worker.thread.is_alive()
    assert not worker.worker.redis_ok
    worker.stop()


def test_the_cli_stops_a_run_whose_redis_is_gone_with_one_line_and_exit_3(tmp_path: Path) -> None:
    """`coderl train` against a Redis that is not there: exit code 3, one line, the password redacted,
    and no half-made run directory."""
    from driver.services import free_port

    run_dir = tmp_path / "run"
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-m", "coderl.cli", "train", "--run-dir", str(run_dir), "--no-ray"]
    command += ["--set", f"execution.redis_url={url}", "execution.external_workers=true"]
    command += ["execution.redis_outage_s=1", "phases.sft_steps=1"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 3, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "unreachable for" in errors[0] and ":***@127.0.0.1" in errors[0], done.stderr
    assert "hunter2secret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_a_read_whose_reply_was_lost_is_read_again_from_the_pending_entries(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after Redis delivered entries to the learner's consumer but before the
    reply arrived: the retried read gets nothing new, so the reader re-reads its pending entries."""
    channel = TrainStreams(streams.StreamNames(prefix="lost"), "run")
    client = open_client(redis_server.url, 30)
    reader = RolloutReader(client, channel)
    assert reader.read(count=10, block_ms=10) == []
    for sample in ("a", "b"):
        client.xadd(channel.results, {streams.DATA_FIELD: _report(sample)})
    connection_class = client.connection_pool.connection_class
    real = connection_class.read_response
    armed = [True]

    def lose_one_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = real(self, *args, **kwargs)  # Redis has run the command
        if armed[0]:
            armed[0] = False
            raise redis.ConnectionError("connection lost before the reply arrived")
        return reply

    monkeypatch.setattr(connection_class, "read_response", lose_one_reply)
    got = [d.report.sample_id for d in reader.read(count=10, block_ms=100)]
    got += [d.report.sample_id for d in reader.read(count=10, block_ms=100)]
    assert not armed[0] and got == ["a", "b"]
    assert reader.read(count=10, block_ms=50) == []
    client.close()


def _report(sample_id: str) -> str:
    from coderl.execution import ExecutionResult
    from coderl.wire import ExecutionReport

    result = ExecutionResult(verdict=Verdict.PASSED)
    return ExecutionReport(sample_id=sample_id, task_id="p", result=result, worker_id="w").to_wire()
