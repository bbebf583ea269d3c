"""Executor configuration (pydantic; defaults defined once here)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SandboxOwner(BaseModel):
    """Who a pool's containers belong to, written on each as labels so that a later worker can tell
    a dead owner's containers from a live one's (executor/sandbox/owner.py). Filled in by the
    worker (WorkerConfig); empty for a bare Executor, whose process alone then identifies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_id: str = ""
    prefix: str = ""
    """the worker's stream prefix: with ``worker_id``, its heartbeat key {prefix}:worker:{id}"""
    redis_url: str = Field(default="", repr=False)
    """the Redis holding that heartbeat (labels carry it without its password)"""


class SandboxConfig(BaseModel):
    """Where programs run. ``process`` is weaker than ``docker`` and must be asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["docker", "process"] = "docker"
    """docker: hardened long-lived containers; process: a local harness, NO container isolation"""
    image: str = "coderl-sandbox:latest"
    """sandbox image built by deploy/build-images.sh"""
    container_memory_mb: int = Field(default=2048, ge=64)
    """memory cap of each container (whole process tree; swap disabled)"""
    container_cpus: float = Field(default=1.0, gt=0)
    """CPU share of each container"""
    pin_cpus: bool = True
    """pin each sandbox to one core, round robin over the engine's cores: a program and its test
    runner talk in lockstep, and a wake-up on the same core costs about a tenth of one across
    cores (measured on a 2-core VM: 2.4 us against 25 us of CPU per message)"""
    pids_limit: int = Field(default=64, ge=8)
    """processes and threads per container"""
    tmpfs_mb: int = Field(default=64, ge=1)
    """size of the container's /tmp (program working directories)"""
    max_runs_per_container: int = Field(default=1000, ge=1)
    """recycle a container after this many runs even if it looks clean"""
    start_timeout_s: float = Field(default=30.0, gt=0)
    check_harness_digest: bool = True
    """refuse an image built from different harness code than this checkout's"""
    preload_numpy: bool = False
    """import numpy in the zygote, so a program that uses it does not spend ~70 ms importing it;
    off by default: a zygote holding numpy makes every program's fork ~0.5 ms dearer and every
    sandbox start ~70 ms slower, and few programs use numpy (APPS's ``np`` loads on first use)"""
    owner: SandboxOwner = Field(default_factory=SandboxOwner, exclude=True)
    """set by the process that starts the pool, never a setting: left out of dumped configurations"""


class LimitsConfig(BaseModel):
    """Per-test limits, enforced from outside the program."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=4.0, gt=0)
    """CPU seconds per test (APPS uses 4)"""
    wall_factor: float = Field(default=2.0, ge=1.0)
    """wall-clock limit = timeout_s * wall_factor + wall_slack_s"""
    wall_slack_s: float = Field(default=1.0, ge=0)
    memory_mb: int = Field(default=1024, ge=32)
    """address-space limit of the program's process (RLIMIT_AS)"""
    output_mb: float = Field(default=16.0, gt=0)
    """stdout cap, stderr cap, and the cap on a call's returned value as it travels (JSON, non-ASCII
    characters \\u-escaped); beyond any of them the run is OUTPUT_LIMIT"""
    file_mb: int = Field(default=32, ge=1)
    """largest file the program may write"""
    open_files: int = Field(default=256, ge=16)

    def as_job_limits(self) -> dict[str, float | int]:
        return {
            "cpu_s": self.timeout_s,
            "wall_s": self.timeout_s * self.wall_factor + self.wall_slack_s,
            "memory_bytes": self.memory_mb << 20,
            "output_bytes": int(self.output_mb * (1 << 20)),
            "file_bytes": self.file_mb << 20,
            "open_files": self.open_files,
        }


class ExecutorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    """programs run in parallel (one sandbox each)"""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    stop_on_first_failure: bool = True
    """stop a program's tests at the first failure (CodeRL's early exit; the verdict is the same)"""
    max_attempts: int = Field(default=3, ge=1)
    """tries per program when the sandbox itself fails (SANDBOX_ERROR is retried, never scored)"""
