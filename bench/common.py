"""What the benchmarks share: the host description, CPU counters read from /proc and the Docker
cgroup, the background load, percentiles, the CPU table, removal of leftover containers and the
JSON output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SANDBOX_LABEL = "org.coderl.sandbox"
"""Every executor sandbox container carries this label; ``{SANDBOX_LABEL}.owner`` names its pool."""
DOCKER_DAEMONS = {
    "dockerd",
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "runc",
    "docker-proxy",
}
DOCKER_CPUACCT_ROOTS = ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker")


# --------------------------------------------------------------------------------------------
# The host


def host_description() -> str:
    return f"{os.cpu_count() or 1} CPUs, {platform.platform()}, Python {platform.python_version()}"


def clock_tick() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int | str) -> tuple[str, list[int]] | None:
    """(comm, [utime, stime, cutime, cstime]) of a live process in clock ticks; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()
    return text[text.find("(") + 1 : text.rfind(")")], [int(x) for x in rest[11:15]]


def process_cpu(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds; 0 if it is gone."""
    found = proc_stat(pid)
    return sum(found[1][:2]) / clock_tick() if found else 0.0


def host_busy_cpu() -> float:
    """CPU seconds the whole host has been busy: everything but idle and iowait."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / clock_tick()


def own_cpu() -> float:
    """CPU seconds of this process (all its threads)."""
    times = os.times()
    return times.user + times.system


def docker_daemons_cpu(with_reaped_children: bool) -> dict[str, float]:
    """CPU seconds of each Docker daemon process (dockerd, containerd, shims, ...) by pid; with
    ``with_reaped_children``, the CPU of the children each one reaped is counted too."""
    fields = 4 if with_reaped_children else 2
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = proc_stat(entry.name)
            if found and found[0] in DOCKER_DAEMONS:
                out[entry.name] = sum(found[1][:fields]) / clock_tick()
    return out


def docker_cgroup_cpu(container_id: str = "") -> float | None:
    """CPU seconds of one running container (cgroup v1 cpuacct), or with no id of all Docker
    containers (the parent cgroup keeps the usage of removed ones); None where unreadable."""
    for root in DOCKER_CPUACCT_ROOTS:
        try:
            return int(Path(root, container_id, "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def cpu_spent_ms(
    before: dict[str, Any], after: dict[str, Any], programs: int, remainder: str
) -> dict[str, float]:
    """ms of CPU per program in each bucket of two snapshots of cumulative CPU seconds (a bucket
    that maps pids or containers to seconds is summed over the ones in ``after``: one gone in
    between loses its share), plus ``remainder``: "host busy" not in any other bucket (buckets
    that could not be read, nan, left out)."""
    out = {}
    for key, value in after.items():
        if isinstance(value, dict):
            spent = sum(v - before[key].get(k, 0.0) for k, v in value.items())
        else:
            spent = value - before[key]
        out[key] = 1000 * spent / programs
    out[remainder] = out["host busy"] - sum(v for k, v in out.items() if k != "host busy" and v == v)
    return out


def background_load(seconds: float = 1.0) -> float:
    """Share of the host's CPUs busy over ``seconds`` while this benchmark is idle."""
    before = host_busy_cpu()
    time.sleep(seconds)
    return (host_busy_cpu() - before) / seconds / (os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Numbers and tables


def percentile(values: Sequence[float], q: float, method: str = "nearest_rank") -> float:
    """The q-th percentile (q in 0..100); nan for no values. ``nearest_rank``: the smallest value
    with at least q% of the values at or below it; ``rounded_index``: the value at index
    round(q% of (n - 1)) of the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if method == "rounded_index":
        return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def print_cpu_table(
    header: str, column_names: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]], width: int
) -> None:
    """A header line and one line per (label, cells) row: labels as given (padded by the
    caller), then each name or cell right-aligned in ``width`` characters, cells as %.2f."""
    print(f"  {header}" + "".join(f"{name:>{width}}" for name in column_names))
    for label, cells in rows:
        print(f"  {label}" + "".join(f"{cell:>{width}.2f}" for cell in cells))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (values JSON cannot hold as their str()), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# Containers left behind


def force_remove_containers(ids: Sequence[str]) -> int:
    """``docker rm -f`` these containers (names or ids); returns how many there were."""
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return len(ids)


def sandbox_containers() -> list[tuple[str, str]]:
    """(id, owner) of every executor sandbox container on this host."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={SANDBOX_LABEL}",
         "--format", '{{.ID}} {{.Label "' + SANDBOX_LABEL + '.owner"}}'],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]  # type: ignore[misc]


def owned_sandbox_containers(owner_prefixes: Sequence[str]) -> list[str]:
    """Ids of the sandbox containers whose pool owner starts with one of ``owner_prefixes``."""
    return [cid for cid, owner in sandbox_containers() if owner.startswith(tuple(owner_prefixes))]


def remove_sandbox_containers(owner_prefixes: Sequence[str], wait_s: float = 5.0) -> int:
    """Wait for the sandboxes of these owners (a pool's owner is ``{pid}-{token}``) to be removed
    by their pools (``Executor.close()`` removes them from daemon threads), then force-remove what
    is left. Returns how many had to be forced."""
    if not owner_prefixes or shutil.which("docker") is None:
        return 0
    deadline = time.monotonic() + wait_s
    while True:
        ours = owned_sandbox_containers(owner_prefixes)
        if not ours:
            return 0
        if time.monotonic() >= deadline:
            return force_remove_containers(ours)
        time.sleep(0.25)
