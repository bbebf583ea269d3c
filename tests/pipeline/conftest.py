"""Small training runs on the tiny model through real Redis, real executors (Docker sandboxes) and,
for the Ray tests, a real local Ray instance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import docker
import pytest

from coderl.config import load_config
from driver.train_config import TrainConfig

SMALL_RUN = [
    "phases.sft_steps=30",
    "phases.critic_steps=2",
    "phases.rl_steps=4",
    "problems.suite.train_size=40",
    "problems.suite.held_out_size=6",
    "learner.batch_size=8",
    "learner.audit=true",
    "learner.wait_s=240",
    "sampler.problems_per_round=2",
    "sampler.sampling.n=4",
    "sampler.sampling.max_new_tokens=48",
    "eval.max_new_tokens=48",
    "checkpoint_every=2",
    "execution.worker.executor.workers=2",
    "execution.worker.executor.limits.timeout_s=2",
]


def small_config(run_dir: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, None, [f"run_dir={run_dir}", *SMALL_RUN, *overrides])


def audit_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]


def remove_containers_of_dead_owners() -> None:
    """Sandbox containers of a killed process (its pid is in the owner label) end by themselves
    (their stdin closes with it); remove any that are still there, racing their own removal."""
    client = docker.from_env()
    for container in client.containers.list(all=True, sparse=True, filters={"label": "org.coderl.sandbox"}):
        owner = (container.attrs.get("Labels") or {}).get("org.coderl.sandbox.owner", "")
        pid = owner.split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass  # already going away


@pytest.fixture(autouse=True)
def _needs_services() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (deploy/setup-host.sh installs it)")
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
