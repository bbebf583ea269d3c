"""How the executor benchmark times its systems: round-robin timed runs, each with the CPU it cost
per program by bucket (the host, this process, its reaped children, the Docker daemons and
containers) and, for (a), the CPU inside its sandboxes by process."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    SANDBOX_LABEL,
    clock_tick,
    cpu_spent_ms,
    docker_cgroup_cpu,
    docker_daemons_cpu,
    host_busy_cpu,
    own_cpu,
    proc_stat,
)
from bench.executor.systems import Run
from bench.executor.workload import Program

CPU_BUCKETS = ("host busy", "this process", "its children", "docker daemons", "containers", "other")
SANDBOX_ROLES = ("server", "runners", "zygote", "candidates")


@dataclass
class SystemResult:
    key: str
    name: str
    programs: list[Program]
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    startup_s: float | None = None
    cpu: list[dict[str, float]] = field(default_factory=list)
    """per timed run: ms of CPU per program, by where it was spent"""

    def cpu_ms(self) -> dict[str, float]:
        return {key: statistics.median(run[key] for run in self.cpu) for key in self.cpu[0]}

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def throughput(self) -> float:
        return len(self.programs) / self.wall_s

    @property
    def verdicts(self) -> list[bool]:
        return self.runs[0].verdicts

    def flaky(self) -> int:
        return sum(len({r.verdicts[i] for r in self.runs}) > 1 for i in range(len(self.programs)))


# --------------------------------------------------------------------------------------------
# CPU accounting


def cpu_snapshot() -> dict[str, Any]:
    """Cumulative CPU seconds: the whole host, this process, its reaped children, the Docker
    daemons (per pid: dockerd, containerd, shims) and all Docker containers (cgroup v1 cpuacct;
    the parent cgroup keeps the usage of removed containers)."""
    times = os.times()
    containers = docker_cgroup_cpu()
    return {
        "host busy": host_busy_cpu(),
        "this process": own_cpu(),
        "its children": times.children_user + times.children_system,
        "docker daemons": docker_daemons_cpu(with_reaped_children=True),
        "containers": float("nan") if containers is None else containers,
    }


def _process_harness_servers() -> list[str]:
    """Host pids of this process's ``harness.server`` children (process backend)."""
    pids = []
    for task in os.scandir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"{task.path}/children") as children:
                pids += children.read().split()
        except OSError:
            continue
    servers = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"harness.server" in cmdline.read():
                    servers.append(pid)
        except OSError:
            continue
    return servers


def sandbox_servers(backend: str, owner: str) -> list[str]:
    """Host pids of the executor's harness servers: its containers' PID 1 (docker), or this
    process's ``harness.server`` children (process backend)."""
    if backend == "process":
        return _process_harness_servers()
    ids = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label={SANDBOX_LABEL}.owner={owner}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not ids:
        return []
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", *ids], capture_output=True, text=True, check=False
    ).stdout.split()


def sandbox_roles(backend: str, owner: str) -> dict[str, float]:
    """CPU seconds of the executor's sandboxes by role, read from the host's /proc: the harness
    server (PID 1 of a container), the test runner (its other child, long-lived; runners it
    replaced count through its cutime), the zygote (its first child), and the candidates and
    janitors the zygote forked and reaped (the zygote's cutime)."""
    pids = sandbox_servers(backend, owner)
    tick = clock_tick()
    roles = dict.fromkeys(SANDBOX_ROLES, 0.0)
    for pid in pids:
        server = proc_stat(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                zygote_pid, *runner_pids = children.read().split()
        except (OSError, ValueError):
            continue
        zygote = proc_stat(zygote_pid)
        if server is None or zygote is None:
            continue
        roles["server"] += sum(server[1][:2]) / tick
        roles["runners"] += sum(server[1][2:]) / tick
        for runner_pid in runner_pids:
            runner = proc_stat(runner_pid)
            roles["runners"] += sum(runner[1][:2]) / tick if runner else 0.0
        roles["zygote"] += sum(zygote[1][:2]) / tick
        roles["candidates"] += sum(zygote[1][2:]) / tick
    roles["containers"] = len(pids)
    return roles


# --------------------------------------------------------------------------------------------
# Timed runs


@dataclass
class Bench:
    """One system to time: its result, how to run a list of programs, its warm-up programs and,
    for (a) on docker, a reader of its containers' CPU by role."""

    result: SystemResult
    fn: Callable[[list[Program]], Run]
    warmup: list[Program]
    roles: Callable[[], dict[str, float]] | None = None

    def timed_run(self) -> None:
        result = self.result
        roles_before = self.roles() if self.roles else {}
        before = cpu_snapshot()
        started = time.perf_counter()
        run = self.fn(result.programs)
        run.wall_s = time.perf_counter() - started
        result.runs.append(run)
        result.cpu.append(cpu_spent_ms(before, cpu_snapshot(), len(result.programs), "other"))
        if self.roles:
            roles_after = self.roles()
            if roles_after.get("containers") == roles_before.get("containers"):
                n = len(result.programs)
                for role in SANDBOX_ROLES:
                    result.cpu[-1][f"sandbox {role}"] = 1000 * (roles_after[role] - roles_before[role]) / n


def run_all(benches: list[Bench], repeat: int) -> None:
    """Warm every system up (untimed), then time them round-robin, ``repeat`` rounds, so that
    load from elsewhere on the host spreads over all systems rather than hitting one."""
    for bench in benches:
        if bench.warmup:
            bench.fn(bench.warmup)
    for round_ in range(1, repeat + 1):
        line = []
        for bench in benches:
            bench.timed_run()
            line.append(f"({bench.result.key}) {bench.result.runs[-1].wall_s:.2f} s")
        print(f"  round {round_}/{repeat}: " + ", ".join(line), flush=True)
