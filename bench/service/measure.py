"""What the executor service benchmark measures: a ``Run`` of N programs on one configuration, a
``Config`` with its runs, and the CPU a run cost per program by process (``CpuMeter``)."""

from __future__ import annotations

import os
import shutil
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    cpu_spent_ms,
    docker_cgroup_cpu,
    docker_daemons_cpu,
    host_busy_cpu,
    own_cpu,
    owned_sandbox_containers,
    process_cpu,
)

CPU_BUCKETS = (
    "host busy",
    "bench process",
    "worker processes",
    "redis-server",
    "our sandboxes",
    "docker daemons",
    "not ours",
)
CPU_SHORT = {
    "host busy": "host",
    "bench process": "bench",
    "worker processes": "workers",
    "redis-server": "redis",
    "our sandboxes": "sandboxes",
    "docker daemons": "dockerd…",
    "not ours": "not ours",
}


@dataclass
class CpuMeter:
    """Cumulative CPU seconds: the host, this process, the worker processes, redis-server, the
    sandbox containers of ``owners`` (cgroup v1 cpuacct of each; one removed during a run loses
    its share to 'not ours'), the Docker daemons (they relay the sandboxes' attach streams, for
    us and for anyone else) and, by difference, everything else on the host ('not ours': other
    users' load, which makes a run slower through no fault of its own)."""

    worker_pids: list[int]
    redis_pid: int | None
    owners: list[str]

    def snapshot(self, after: bool = False) -> dict[str, Any]:
        """Counters now. Listing the containers runs the docker CLI (tens of ms of CPU): before a
        run it happens ahead of the host reading, after a run behind it, outside the window
        either way (the sandboxes are idle by then, so their counters read a little later are
        the same)."""
        ids = [] if after else self._our_containers()
        out: dict[str, Any] = {
            "host busy": host_busy_cpu(),
            "bench process": own_cpu(),
            "worker processes": sum(process_cpu(pid) for pid in self.worker_pids),
            "redis-server": process_cpu(self.redis_pid) if self.redis_pid else 0.0,
            "docker daemons": docker_daemons_cpu(with_reaped_children=False),
        }
        ours = {}
        for cid in self._our_containers() if after else ids:
            value = docker_cgroup_cpu(cid)
            if value is not None:
                ours[cid] = value
        out["our sandboxes"] = ours
        return out

    def _our_containers(self) -> list[str]:
        if not self.owners or shutil.which("docker") is None:
            return []
        return owned_sandbox_containers(self.owners)

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, float]:
        """ms per program in each bucket."""
        return cpu_spent_ms(before, after, n, "not ours")


@dataclass
class Run:
    wall_s: float
    latencies: list[float]
    verdicts: dict[int, str]
    exec_s: list[float]
    """per program: the executor's own wall time (ExecutionResult.run_time_s)"""
    sandboxes: int
    submit_s: float = 0.0
    publish_to_read: list[float] = field(default_factory=list)
    """Redis path: report created in the worker -> result read here"""
    queued: list[float] = field(default_factory=list)
    """Redis path: request created -> execution started in a worker"""
    per_worker: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    missing: int = 0

    @property
    def throughput(self) -> float:
        return len(self.verdicts) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def utilisation(self) -> float:
        return sum(self.exec_s) / (self.wall_s * self.sandboxes) if self.wall_s > 0 else 0.0

    def foreign_share(self, n: int) -> float:
        """Share of the host's CPU capacity used by processes not started here, during the run."""
        if "not ours" not in self.cpu or self.wall_s <= 0:
            return float("nan")
        return self.cpu["not ours"] * n / 1000 / (self.wall_s * (os.cpu_count() or 1))

    def adjusted_throughput(self, n: int) -> float:
        """Throughput per unit of host CPU capacity left by other users: throughput / (1 -
        others). On a CPU-saturated host this is what the run would do on an idle one."""
        return self.throughput / max(1e-9, 1.0 - self.foreign_share(n))

    @property
    def slot_overhead_ms(self) -> float:
        """Per program, the time a sandbox slot spends outside ``Executor.execute``."""
        n = len(self.exec_s)
        return 1000 * (self.wall_s * self.sandboxes - sum(self.exec_s)) / n if n else float("nan")


@dataclass
class Config:
    key: str
    label: str
    processes: int
    per_process: int
    variant: str = "cli"
    """redis path: which worker runs (``VARIANTS`` of bench/service/processes.py); in-process: unused"""
    runs: list[Run] = field(default_factory=list)
    startup_s: float = float("nan")

    @property
    def sandboxes(self) -> int:
        return self.processes * self.per_process

    @property
    def in_process(self) -> bool:
        return self.key == "in-process"

    def median(self, fn: Callable[[Run], float]) -> float:
        values = [fn(r) for r in self.runs]
        return statistics.median(values) if values else float("nan")


def in_process_config(sandboxes: int) -> Config:
    """The baseline: ``Executor(workers=sandboxes).execute_many`` in this process."""
    return Config("in-process", f"in-process Executor(workers={sandboxes})", 1, sandboxes)
