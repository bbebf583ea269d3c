"""The training run on a real local Ray instance: decoupled roles, broadcasts, faults, equivalence."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
import redis

from coderl.logs import LOG_LEVEL_ENV
from coderl.streams import StreamNames
from driver.metrics import read_metrics
from driver.services import RunRedis
from driver.train import train
from learner.checkpoint import latest_checkpoint

from .conftest import audit_records, remove_containers_of_dead_owners, small_config

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Actor logs reach this process (and pytest's report of a failure) at INFO.
    runtime_env = {
        "worker_process_setup_hook": "coderl.logs.setup_worker_logging",
        "env_vars": {LOG_LEVEL_ENV: "INFO"},
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True, runtime_env=runtime_env)
    yield
    ray.shutdown()


def test_decoupled_run_on_ray(tmp_path: Path, local_ray: None) -> None:
    run_dir = tmp_path / "run"
    config = small_config(run_dir, "sampler.num_samplers=2")
    result = train(config)
    assert result.state.phase == "done"
    assert result.state.policy_version == 30 + 4

    records = audit_records(run_dir)
    assert len(records) == 2 + 4
    trained = [s for record in records for s in record["trained"]]
    assert len(trained) == len(set(trained))
    samplers = {re.search(r"/v\d+s(\d+)i\d+r\d+/", s).group(1) for s in trained}  # type: ignore[union-attr]
    assert samplers == {"0", "1"}  # both samplers fed the learner

    # Each sampler applied every broadcast, in order: the phase-start broadcasts and one per update.
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    for sampler in state["samplers"]:
        received = sampler["versions_received"]
        assert received == sorted(received)
        assert {31, 32, 33, 34} <= set(received)
        assert received[-1] == 34


def test_data_parallel_learner_on_ray(tmp_path: Path, local_ray: None) -> None:
    """Two learner ranks (Ray actors, gloo): every update trained once, on both ranks in step."""
    run_dir = tmp_path / "run"
    result = train(small_config(run_dir, "learner.world_size=2", "phases.sft_steps=6"))
    assert result.state.phase == "done" and result.state.policy_version == 6 + 4
    records = audit_records(run_dir)
    assert len(records) == 2 + 4  # rank 0 records each update once
    trained = [s for record in records for s in record["trained"]]
    assert len(trained) == len(set(trained))
    rl_rows = [m for m in read_metrics(run_dir / "metrics.jsonl") if "loss/rl" in m]
    assert len(rl_rows) == 4
    assert all(m["learner/rank_weight_spread"] == 0.0 for m in rl_rows)  # the ranks' weights agree


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["run_id"]


def _wait_until(
    condition: Callable[[], bool], what: str, worker: threading.Thread, timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert worker.is_alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_killed_sampler_restarts_and_dead_executors_work_is_reclaimed(
    tmp_path: Path, local_ray: None, request: pytest.FixtureRequest
) -> None:
    run_dir = tmp_path / "run"
    server = RunRedis(tmp_path / "redis")  # the test reads the executors' pending requests in it
    request.addfinalizer(server.stop)
    config = small_config(
        run_dir,
        "sampler.num_samplers=2",
        "phases.rl_steps=160",  # long enough to outlast the reclaim delay after the kill (~0.3 s a step)
        "execution.executor_actors=2",
        "execution.worker.executor.workers=1",
        "execution.worker.claim_idle_ms=3000",
        f"execution.redis_url={server.url}",
    )
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=train(config)), daemon=True)
    worker.start()
    audit = run_dir / "audit.jsonl"
    _wait_until(lambda: audit.is_file() and len(audit_records(run_dir)) >= 3, "RL updates", worker)
    run_id = _run_id(run_dir)

    # A sampler actor dies in the middle of a round; Ray restarts it and the loop re-seeds it.
    ray.kill(ray.get_actor(f"coderl-{run_id}-sampler-0"), no_restart=False)

    # An executor dies (SIGKILL) while it holds requests; the others reclaim them from Redis. It is
    # stopped first and killed only once Redis shows requests pending on it: programs take
    # milliseconds, so "it has work" would otherwise be stale by the time the kill lands.
    executors = [ray.get_actor(f"coderl-{run_id}-executor-{i}") for i in range(2)]
    pid = ray.get(executors[1].pid.remote())
    client, names = redis.Redis.from_url(server.url), StreamNames()

    def holding_requests() -> bool:
        os.kill(pid, signal.SIGSTOP)
        held = client.xpending_range(
            names.requests, names.group, "-", "+", 10, consumername=f"{run_id}-executor-1"
        )
        if not held:
            os.kill(pid, signal.SIGCONT)
        return bool(held)

    _wait_until(holding_requests, "executor work", worker)
    os.kill(pid, signal.SIGKILL)

    def reclaimed() -> bool:
        total = 0.0
        for actor in executors:
            try:
                total += ray.get(actor.metrics.remote(), timeout=5).get("reclaimed", 0.0)
            except (ray.exceptions.RayError, TimeoutError):
                pass  # still restarting
        return total >= 1

    _wait_until(reclaimed, "a reclaimed request", worker, timeout_s=120)
    worker.join(timeout=600)
    client.close()
    remove_containers_of_dead_owners()
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.state.phase == "done" and result.state.policy_version == 30 + 160  # type: ignore[attr-defined]

    trained = [s for record in audit_records(run_dir) for s in record["trained"]]
    assert len(trained) == len(set(trained))  # nothing trained twice, across incarnations
    assert any(re.search(r"/v\d+s0i[1-9]\d*r\d+/", s) for s in trained)  # the restarted sampler fed it


def test_sampler_killed_with_large_problem_shards_comes_back(
    tmp_path: Path, local_ray: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """A sampler whose problems are too large to travel inline (each shard is over Ray's 100 KiB
    limit, so they go through the object store) is SIGKILLed mid-RL: it comes back with its
    problems, and the run completes with nothing trained twice. Ray's warning that a restart could
    not find constructor arguments in the object store is never given."""
    run_dir = tmp_path / "run"
    config = small_config(
        run_dir,
        "sampler.num_samplers=2",
        "problems.suite.train_size=400",  # ~160 KB of RL problems per sampler
        "phases.rl_steps=40",
    )
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=train(config)), daemon=True)
    worker.start()
    audit = run_dir / "audit.jsonl"
    _wait_until(lambda: audit.is_file() and len(audit_records(run_dir)) >= 2 + 3, "RL updates", worker)

    sampler = ray.get_actor(f"coderl-{_run_id(run_dir)}-sampler-0")
    os.kill(ray.get(sampler.__ray_call__.remote(lambda _: os.getpid())), signal.SIGKILL)
    worker.join(timeout=600)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.state.phase == "done" and result.state.policy_version == 30 + 40  # type: ignore[attr-defined]

    trained = [s for record in audit_records(run_dir) for s in record["trained"]]
    assert len(trained) == len(set(trained))  # nothing trained twice, across incarnations
    assert any(re.search(r"/v\d+s0i[1-9]\d*r\d+/", s) for s in trained)  # the new sampler fed it
    assert "has constructor arguments in the object store" not in capfd.readouterr().err
