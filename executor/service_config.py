"""Configuration of an executor service worker (Redis streams in, results out)."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coderl.redis_client import DEFAULT_OUTAGE_S

from .config import ExecutorConfig, SandboxOwner


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseModel):
    """How a worker serves requests, whoever starts it (``coderl worker``, or a training run that
    starts its own workers: its ``execution.worker``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    prefetch: int = Field(default=1, ge=0)
    """requests read ahead per sandbox (they wait in this worker, heartbeated, never reclaimed)"""
    block_ms: int = Field(default=500, ge=10)
    """how long one read waits for new requests"""
    claim_idle_ms: int = Field(default=15_000, ge=100)
    """a request pending this long without a heartbeat belongs to a dead worker and is reclaimed"""
    max_deliveries: int = Field(default=3, ge=1)
    """after this many deliveries without a result a request is dead-lettered"""
    result_ttl_s: int = Field(default=7 * 86400, ge=60)
    """how long a sample id stays marked as done (its duplicate deliveries are ignored)"""
    results_maxlen: int = Field(default=1_000_000, ge=1000)
    """last-resort cap of a results stream; consumers delete what they acknowledge"""
    dead_maxlen: int = Field(default=100_000, ge=100)
    heartbeat_s: float = Field(default=2.0, gt=0)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    """on SIGTERM: wait this long for in-flight programs, then hand the rest back"""
    health_port: int = Field(default=0, ge=0, le=65535)
    """HTTP /livez, /readyz, /metrics on this port (0: off)"""
    problem_cache: int = Field(default=4096, ge=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


class WorkerConfig(WorkerSettings):
    """A worker process: its settings plus where it connects and who it is."""

    redis_url: str = "redis://localhost:6379/0"
    """Redis holding the request/result streams (env CODERL_REDIS_URL): redis://[:PASSWORD@]HOST:PORT/DB
    or rediss:// (TLS)"""
    redis_outage_s: float = Field(default=DEFAULT_OUTAGE_S, gt=0)
    """retry an unreachable Redis this long, then exit with a one-line error (env CODERL_REDIS_OUTAGE_S)"""
    prefix: str = "coderl"
    """namespace of every stream and key (coderl/streams.py)"""
    worker_id: str = Field(default_factory=_default_worker_id)
    restart_killed_siblings: bool = False
    """in a compose service: start a sibling worker container that was killed (exit code 137) and
    not removed, as Docker's restart policy does not after `docker kill` (executor/siblings.py;
    env CODERL_RESTART_KILLED_SIBLINGS, on in docker-compose.yml)"""

    @model_validator(mode="after")
    def _label_sandboxes(self) -> WorkerConfig:
        """The worker's sandboxes carry its id, prefix and Redis (executor/sandbox/owner.py), so a
        worker starting later can tell, by this worker's heartbeat, whether they are abandoned."""
        owner = SandboxOwner(worker_id=self.worker_id, prefix=self.prefix, redis_url=self.redis_url)
        sandbox = self.executor.sandbox.model_copy(update={"owner": owner})
        # frozen: set once, here, while the model is being built
        object.__setattr__(self, "executor", self.executor.model_copy(update={"sandbox": sandbox}))
        return self
