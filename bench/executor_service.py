"""Executor service benchmark: the Redis-stream path vs. the in-process executor, side by side.

    python -m bench.executor_service [--n N] [--repeat R] [--json PATH] [--sandboxes W]
                                     [--backend docker|process] [--profile auto|yes|no]

In ONE run, on the same N programs in every configuration (default 328: for each of the 164
HumanEval problems its canonical solution and a wrong program, ``completion_prefix + "    return
None"``):

  in-process   ``Executor(ExecutorConfig(workers=W)).execute_many(items)``, W = --sandboxes
               (default: the CPU count, 2 here); the baseline
  redis-PxS    P worker PROCESSES, ``python -m executor --workers S`` as shipped, fed through a
               private redis-server this script starts on a free port (``--save "" --appendonly
               no``). This process submits the requests (``coderl.streams.submit``) and reads the
               results back from the results stream with a consumer group, acknowledging and
               deleting them as it goes. P = 1, 2, 4 with S = max(1, W // P): 1x2 and 2x1 have
               W = 2 sandboxes like the baseline; 4x1 has 4 and OVERSUBSCRIBES 2 cores
               (informational).

Method. Every configuration is started once (worker processes in parallel) and is ready when
each worker's heartbeat key exists (written after its sandbox pool started); then each one is
warmed up on 2 x sandboxes programs. None of that is timed. Then R rounds (--repeat, default 4):
in each, every configuration runs the N programs in turn (order reversed every other round).
Timed: first submit to last result read (in-process: the execute_many call). Reported per
configuration: throughput (median), ratio to in-process = median over rounds of the ratio to
the in-process run of the same round (paired, so that load from other users that comes and
goes affects both sides), best-of ratio, p50/p99 latency per program (request created_at ->
result read; in-process: batch start -> result), sandbox utilisation, sandbox-slot time per
program spent outside ``Executor.execute``, the share of host CPU used by processes this
script did not start ("others": on a shared host, the main source of noise), and CPU per
program by process (this one, workers, redis-server, our sandbox containers, Docker daemons).
Target: "Redis path keeps >= 80% of in-process throughput", PASS/FAIL for the configurations
with W sandboxes. Every program must get the same verdict in every configuration and round;
differences are listed. Exit status 0 only when the target passes with no differences.

Profile (automatic when the target fails; --profile yes/no to force): (1) the shipped worker
loop around a zero-cost stub executor: requests/s ceiling and CPU per request of the worker,
redis-server and this process; (2) the real executor behind three worker variants, paired
with in-process again: as shipped, with one request prefetched per sandbox (in-flight cap
2 x sandboxes, execution still W at a time), and with XREADGROUP count = free slots plus
EVALSHA publishing; (3) median cost of each Redis call and pydantic step on the request path.
The variants are subclasses defined here (``_worker`` mode of this script); executor/worker.py
is not modified.

Everything started here (worker processes, the redis-server, every sandbox container, found
by its pool's owner label) is removed at the end, also on Ctrl-C or SIGTERM. Needs no network:
Docker with ``coderl-sandbox:latest`` (deploy/build-images.sh; a worker that finds a stale
image exits and the script says so) or ``--backend process``, and redis-server on PATH.
About 2-3 minutes with the defaults on 2 cores, about 1 more with the profile.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file, bench/ would be sys.path[0] and bench/executor.py would shadow the package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from coderl import streams
from coderl.execution import ExecutionResult
from coderl.outcomes import Verdict
from coderl.problems import Problem, load_problems
from coderl.wire import ExecutionReport, ExecutionRequest
from executor.config import ExecutorConfig, SandboxConfig
from executor.engine import ExecutionItem, Executor
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.80
TARGET_TEXT = "Redis path keeps ≥ 80% of in-process throughput"
PROCESS_COUNTS = (1, 2, 4)
RESULTS_GROUP = "bench"
SANDBOX_LABEL = "org.coderl.sandbox"
WORKER_ENV_OVERRIDES = (
    "CODERL_REDIS_URL",
    "CODERL_EXECUTOR_WORKERS",
    "CODERL_HEALTH_PORT",
    "CODERL_WORKER_ID",
    "CODERL_PREFIX",
)


# --------------------------------------------------------------------------------------------
# Workload


@dataclass(frozen=True)
class Job:
    index: int
    problem: Problem
    program: str
    label: str

    @property
    def key(self) -> str:
        return f"{self.problem.task_id}[{self.label}]"


def build_workload(n: int) -> list[Job]:
    """canonical, wrong, canonical, wrong, ... over the 164 HumanEval problems, cycled up to n."""
    base: list[tuple[Problem, str, str]] = []
    for problem in load_problems("humaneval"):
        base.append((problem, problem.solutions[0], "canonical"))
        base.append((problem, problem.completion_prefix + "    return None\n", "wrong"))
    jobs = []
    for index in range(n):
        problem, program, label = base[index % len(base)]
        lap = index // len(base)
        jobs.append(Job(index, problem, program, label if lap == 0 else f"{label}#{lap}"))
    return jobs


# --------------------------------------------------------------------------------------------
# Measurements


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds; 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _host_busy() -> float:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


CGROUP_CPUACCT = ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker")
DAEMONS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy"}


def _container_cpu(container_id: str) -> float | None:
    """CPU seconds of one running container (cgroup v1 cpuacct), or None where unreadable."""
    for root in CGROUP_CPUACCT:
        try:
            return int(Path(root, container_id, "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def _daemons_cpu() -> dict[str, float]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] in DAEMONS:
            fields = text[text.rfind(")") + 2 :].split()
            out[entry.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


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
            "host busy": _host_busy(),
            "bench process": _self_cpu(),
            "worker processes": sum(_proc_cpu(pid) for pid in self.worker_pids),
            "redis-server": _proc_cpu(self.redis_pid) if self.redis_pid else 0.0,
            "docker daemons": _daemons_cpu(),
        }
        ours = {}
        for cid in self._our_containers() if after else ids:
            value = _container_cpu(cid)
            if value is not None:
                ours[cid] = value
        out["our sandboxes"] = ours
        return out

    def _our_containers(self) -> list[str]:
        if not self.owners or shutil.which("docker") is None:
            return []
        return [cid for cid, owner in sandbox_containers() if owner.startswith(tuple(self.owners))]

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, float]:
        """ms per program in each bucket."""
        out = {}
        for key, value in after.items():
            if isinstance(value, dict):
                spent = sum(v - before[key].get(k, 0.0) for k, v in value.items())
            else:
                spent = value - before[key]
            out[key] = 1000 * spent / n
        out["not ours"] = out["host busy"] - sum(v for k, v in out.items() if k != "host busy")
        return out


def background_load(seconds: float = 1.0) -> float:
    before = _host_busy()
    time.sleep(seconds)
    return (_host_busy() - before) / seconds / (os.cpu_count() or 1)


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
    """redis path: which worker runs (see VARIANTS); in-process: unused"""
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


# --------------------------------------------------------------------------------------------
# Processes: redis-server, worker fleets, sandbox containers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except OSError:
        pass


class RedisServer:
    """A private, non-persistent redis-server on a free local port."""

    def __init__(self, workdir: Path) -> None:
        self.proc: subprocess.Popen[Any] | None = None
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir),
                 "--logfile", str(workdir / f"redis-{self.port}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            self.url = f"redis://127.0.0.1:{self.port}/0"
            client = redis.Redis.from_url(self.url)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    client.ping()
                    client.close()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
            _stop_process(self.proc)
        raise RuntimeError("could not start redis-server on a free port")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM, 5.0)


def sandbox_containers() -> list[tuple[str, str]]:
    """(id, owner) of every executor sandbox container on this host."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={SANDBOX_LABEL}",
         "--format", '{{.ID}} {{.Label "' + SANDBOX_LABEL + '.owner"}}'],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]  # type: ignore[misc]


def remove_containers(owner_prefixes: list[str], wait_s: float = 5.0) -> int:
    """Wait for the sandboxes of these owners (a pool's owner is ``{pid}-{token}``) to be removed
    by their pools, then force-remove what is left. Returns how many had to be forced."""
    if not owner_prefixes or shutil.which("docker") is None:
        return 0
    deadline = time.monotonic() + wait_s
    while True:
        ours = [cid for cid, owner in sandbox_containers() if owner.startswith(tuple(owner_prefixes))]
        if not ours:
            return 0
        if time.monotonic() >= deadline:
            subprocess.run(["docker", "rm", "-f", *ours], capture_output=True, check=False)
            return len(ours)
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# Worker variants, for the profile: subclasses of the shipped worker, which stays unmodified

VARIANTS = {
    "cli": "the worker as shipped (python -m executor)",
    "prefetch": "shipped worker + one request prefetched per sandbox (in-flight cap 2 x sandboxes)",
    "batched": "shipped worker + XREADGROUP count = free slots + EVALSHA publish",
}


class PrefetchWorker(ExecutorWorker):
    """One request prefetched per sandbox: the in-flight cap (``slots``) is 2 x sandboxes, while
    a second semaphore still lets only ``sandboxes`` programs execute at a time. A sandbox that
    finishes hands over to an already-dispatched request waiting on that semaphore (as a pool
    thread of ``Executor.execute_many`` takes its next item) instead of waiting for the main
    loop to wake up, call XREADGROUP and dispatch. Prefetched requests are in ``in_flight``, so
    heartbeats keep them claimed and a drain hands them back like running ones."""

    def __init__(self, config: WorkerConfig, executor: Any = None) -> None:
        super().__init__(config, executor)
        self.slots = threading.BoundedSemaphore(2 * config.executor.workers)
        self.running = threading.BoundedSemaphore(config.executor.workers)

    def _execute(self, *args: Any) -> None:
        with self.running:
            super()._execute(*args)


class BatchedWorker(ExecutorWorker):
    """Reads up to the free slots per XREADGROUP and publishes with EVALSHA (script cached)."""

    def _read_new(self) -> list[tuple[str, dict[Any, Any], int]]:
        free = 1 + int(getattr(self.slots, "_value", 0))  # the loop holds one slot while reading
        reply = self.redis.xreadgroup(
            self.names.group, self.config.worker_id, {self.names.requests: ">"}, count=free,
            block=self.config.block_ms,
        )  # fmt: skip
        return [
            (eid.decode() if isinstance(eid, bytes) else str(eid), fields, 1)
            for _, messages in reply or []
            for eid, fields in messages
        ]

    def _publish(self, entry_id: str, report: ExecutionReport, results_stream: str) -> None:
        if not hasattr(self, "_script"):
            self._script = self.redis.register_script(streams._PUBLISH_ONCE)
        keys = [self.names.done(report.sample_id), results_stream, self.names.requests]
        ttl, maxlen = self.config.result_ttl_s, self.config.results_maxlen
        first = bool(
            self._script(keys=keys, args=[ttl, report.to_wire(), maxlen, self.names.group, entry_id])
        )
        self.counters["published" if first else "duplicates_suppressed"] += 1
        self.counters[f"verdict:{report.result.verdict.value}"] += 1


WORKER_CLASSES: dict[str, type[ExecutorWorker]] = {
    "cli": ExecutorWorker,
    "prefetch": PrefetchWorker,
    "batched": BatchedWorker,
}


class StubExecutor:
    """Stands in for ``Executor`` in the service-overhead profile: a fixed result, no work."""

    def __init__(self, workers: int) -> None:
        from types import SimpleNamespace

        self.config = ExecutorConfig(workers=workers)
        self.pool = SimpleNamespace(counters=Counter())
        self.counters: Counter[str] = Counter()

    def execute(self, problem: Problem, program: str, which: str = "hidden") -> ExecutionResult:
        return ExecutionResult(verdict=Verdict.PASSED, reward=1.0, outcome_class=3, tests_total=1)

    def close(self) -> None:
        pass


def worker_main(argv: list[str]) -> int:
    """``_worker URL PREFIX WORKER_ID SLOTS BACKEND VARIANT STUB``: a worker variant (STUB "1":
    around StubExecutor, else around the real Executor)."""
    url, prefix, worker_id, slots, backend, variant, stub = argv
    config = WorkerConfig(
        redis_url=url,
        prefix=prefix,
        worker_id=worker_id,
        drain_timeout_s=5,
        executor=executor_config(int(slots), backend),
    )
    executor = StubExecutor(int(slots)) if stub == "1" else None
    worker = WORKER_CLASSES[variant](config, executor=executor)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run()
    return 0


# --------------------------------------------------------------------------------------------
# Worker fleets and the two paths


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV_OVERRIDES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Fleet:
    """P worker processes on one stream prefix: ``python -m executor`` (variant "cli") or a
    variant of this script's ``_worker`` mode."""

    def __init__(
        self,
        url: str,
        prefix: str,
        processes: int,
        per_process: int,
        backend: str,
        logdir: Path,
        variant: str = "cli",
        stub: bool = False,
    ) -> None:
        self.logdir = logdir
        self.names = streams.StreamNames(prefix=prefix)
        self.ids = [f"bench-{variant}-w{i}" for i in range(processes)]
        self.procs: list[subprocess.Popen[Any]] = []
        self.logs: list[Path] = []
        self.started = time.perf_counter()
        for worker_id in self.ids:
            if variant == "cli" and not stub:
                command = [
                    sys.executable, "-m", "executor", "--log-level", "WARNING", "--redis-url", url,
                    "--workers", str(per_process), "--backend", backend,
                    "--set", f"prefix={prefix}", f"worker_id={worker_id}", "drain_timeout_s=5",
                ]  # fmt: skip
            else:
                command = [
                    sys.executable, str(Path(__file__).resolve()), "_worker", url, prefix, worker_id,
                    str(per_process), backend, variant, "1" if stub else "0",
                ]  # fmt: skip
            log = logdir / f"{prefix.replace(':', '_')}-{worker_id}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    command, cwd=ROOT, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def owner_prefixes(self) -> list[str]:
        """A sandbox pool's owner label is ``{pid}-{token}``."""
        return [f"{pid}-" for pid in self.pids]

    def ready(self, client: redis.Redis) -> bool:
        """Every worker has written its heartbeat (it does so after its sandbox pool started)."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                hint = ""
                if "harness" in tail and "rebuild" in tail:
                    hint = "\n(the sandbox image is stale: run deploy/build-images.sh)"
                raise RuntimeError(f"worker exited with {proc.returncode} before it was ready:\n{tail}{hint}")
        return all(client.exists(self.names.worker(w)) for w in self.ids)

    def stop(self) -> int:
        """SIGTERM all (they drain in parallel), SIGKILL stragglers, remove leftover sandboxes."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return remove_containers(self.owner_prefixes())


def executor_config(sandboxes: int, backend: str) -> ExecutorConfig:
    return ExecutorConfig(workers=sandboxes, sandbox=SandboxConfig(backend=backend))


def run_inprocess(executor: Executor, jobs: list[Job]) -> Run:
    """``execute_many`` in a helper thread, so that Ctrl-C reaches the main thread at once."""
    items = [ExecutionItem(job.problem, job.program) for job in jobs]
    latencies: dict[int, float] = {}
    results: dict[int, ExecutionResult] = {}
    failure: list[BaseException] = []
    started = time.perf_counter()

    def done(index: int, result: ExecutionResult) -> None:
        latencies[index] = time.perf_counter() - started
        results[index] = result

    def target() -> None:
        try:
            executor.execute_many(items, on_result=done)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="in-process", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    wall = time.perf_counter() - started
    if failure:
        raise failure[0]
    return Run(
        wall_s=wall,
        latencies=list(latencies.values()),
        verdicts={jobs[i].index: r.verdict.value for i, r in results.items()},
        exec_s=[r.run_time_s for r in results.values()],
        sandboxes=executor.config.workers,
    )


class ResultReader(threading.Thread):
    """Reads reports from the results stream with a consumer group, acks and deletes them."""

    def __init__(self, url: str, names: streams.StreamNames, expected: dict[str, int]) -> None:
        super().__init__(name="results-reader", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.names, self.expected = names, dict(expected)
        self.reports: dict[int, tuple[ExecutionReport, float]] = {}
        self.last_read = 0.0
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        streams.ensure_group(self.client, names.results, RESULTS_GROUP)

    def run(self) -> None:
        try:
            while self.expected and not self.stop_event.is_set():
                reply = self.client.xreadgroup(
                    RESULTS_GROUP, "reader", {self.names.results: ">"}, count=1000, block=200
                )
                now, now_perf = time.time(), time.perf_counter()
                ids = []
                for _, messages in reply or []:
                    for entry_id, fields in messages:
                        ids.append(entry_id)
                        report = ExecutionReport.model_validate_json(streams.decode_entry(fields))
                        index = self.expected.pop(report.sample_id, None)
                        if index is not None:
                            self.reports[index] = (report, now)
                            self.last_read = now_perf
                if ids:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.xack(self.names.results, RESULTS_GROUP, *ids)
                    pipe.xdel(self.names.results, *ids)
                    pipe.execute()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
        finally:
            self.client.close()


def run_redis(
    client: redis.Redis, url: str, names: streams.StreamNames, jobs: list[Job], tag: str, timeout_s: float
) -> Run:
    """Submit every job, read every result; wall time from the first submit to the last read."""
    sample_ids = {f"{tag}-{job.index}": job.index for job in jobs}
    reader = ResultReader(url, names, sample_ids)
    reader.start()
    created: dict[int, float] = {}
    started = time.perf_counter()
    for job in jobs:
        request = ExecutionRequest(
            sample_id=f"{tag}-{job.index}", problem_id=job.problem.task_id, program=job.program
        )
        created[job.index] = request.created_at
        streams.submit(client, names, request)
    submit_s = time.perf_counter() - started
    deadline = time.monotonic() + timeout_s
    while reader.is_alive() and time.monotonic() < deadline:
        reader.join(0.2)
    reader.stop_event.set()
    reader.join(5)
    if reader.error is not None:
        raise reader.error
    wall = (reader.last_read or time.perf_counter()) - started
    reports = reader.reports
    return Run(
        wall_s=wall,
        latencies=[read - created[i] for i, (_, read) in reports.items()],
        verdicts={i: r.result.verdict.value for i, (r, _) in reports.items()},
        exec_s=[r.result.run_time_s for r, _ in reports.values()],
        sandboxes=0,  # set by the caller
        submit_s=submit_s,
        publish_to_read=[read - r.finished_at for r, read in reports.values()],
        queued=[r.queued_s for r, _ in reports.values()],
        per_worker=Counter(r.worker_id for r, _ in reports.values()),
        missing=len(jobs) - len(reports),
    )


def store_problems(client: redis.Redis, names: streams.StreamNames, jobs: list[Job]) -> None:
    pipe = client.pipeline(transaction=False)
    for problem in {job.problem.task_id: job.problem for job in jobs}.values():
        streams.store_problem(pipe, names, problem)  # type: ignore[arg-type]
    pipe.execute()


# --------------------------------------------------------------------------------------------
# Session: everything started here, removed whatever happens


class Session:
    def __init__(self, backend: str, timeout_s: float) -> None:
        self.backend, self.timeout_s = backend, timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="coderl-svcbench-"))
        self.token = uuid.uuid4().hex[:6]
        self.redis: RedisServer | None = None
        self.client: redis.Redis | None = None
        self.fleets: dict[str, Fleet] = {}
        self.executors: dict[str, Executor] = {}
        self.owner_prefixes: list[str] = []
        self.forced = 0

    def start_redis(self) -> RedisServer:
        self.redis = RedisServer(self.workdir)
        self.client = redis.Redis.from_url(self.redis.url)
        return self.redis

    def names(self, config: Config) -> streams.StreamNames:
        return streams.StreamNames(prefix=f"svcbench{self.token}:{config.key}")

    def start(self, configs: list[Config], jobs: list[Job], stub: bool = False) -> None:
        """Start every configuration (worker processes first, they start in parallel) and wait
        until all are ready; each one's start-up time goes to ``config.startup_s``."""
        assert self.redis is not None and self.client is not None
        for config in configs:
            if config.in_process:
                continue
            names = self.names(config)
            store_problems(self.client, names, jobs)
            streams.ensure_group(self.client, names.requests, names.group)
            fleet = Fleet(
                self.redis.url, names.prefix, config.processes, config.per_process, self.backend,
                self.workdir, config.variant, stub,
            )  # fmt: skip
            self.fleets[config.key] = fleet
            self.owner_prefixes += fleet.owner_prefixes()
        for config in configs:
            if config.in_process:
                started = time.perf_counter()
                executor = Executor(executor_config(config.sandboxes, self.backend))
                self.executors[config.key] = executor
                self.owner_prefixes.append(executor.pool.owner)
                config.startup_s = time.perf_counter() - started
        waiting = [c for c in configs if not c.in_process]
        deadline = time.monotonic() + 180
        while waiting:
            for config in list(waiting):
                if self.fleets[config.key].ready(self.client):
                    config.startup_s = time.perf_counter() - self.fleets[config.key].started
                    waiting.remove(config)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"workers not ready after 180 s: {[c.key for c in waiting]}; see {self.workdir}"
                )
            time.sleep(0.05)

    def run(self, config: Config, jobs: list[Job], tag: str) -> Run:
        """One run of ``jobs`` on a started configuration, with its CPU accounting."""
        assert self.redis is not None and self.client is not None
        if config.in_process:
            executor = self.executors[config.key]
            meter = CpuMeter([], None, [executor.pool.owner])
            before = meter.snapshot()
            run = run_inprocess(executor, jobs)
        else:
            fleet = self.fleets[config.key]
            meter = CpuMeter(fleet.pids, self.redis.pid, fleet.owner_prefixes())
            before = meter.snapshot()
            run = run_redis(self.client, self.redis.url, self.names(config), jobs, tag, self.timeout_s)
            run.sandboxes = config.sandboxes
        run.cpu = CpuMeter.delta(before, meter.snapshot(after=True), len(jobs))
        return run

    def stop(self, configs: list[Config]) -> None:
        """Stop these configurations (each is forgotten only once it is stopped, so that an
        interruption half-way leaves the rest to ``close``)."""
        for config in configs:
            fleet = self.fleets.get(config.key)
            if fleet is not None:
                self.forced += fleet.stop()
                del self.fleets[config.key]
                if self.client is not None:
                    self.client.delete(*self.client.keys(f"{fleet.names.prefix}:*") or ["-"])
            executor = self.executors.get(config.key)
            if executor is not None:
                executor.close()
                if self.backend == "docker":
                    self.forced += remove_containers([executor.pool.owner])
                del self.executors[config.key]

    def close(self) -> str:
        errors = []
        fleets = list(self.fleets.values())
        for fleet in fleets:  # SIGTERM to all first: they drain in parallel
            for proc in fleet.procs:
                if proc.poll() is None:
                    try:
                        proc.send_signal(signal.SIGTERM)
                    except OSError:
                        pass
        for fleet in fleets:
            try:
                self.forced += fleet.stop()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                errors.append(f"stopping workers: {exc}")
        for executor in self.executors.values():
            try:
                executor.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"closing the executor: {exc}")
        if self.client is not None:
            self.client.close()
        if self.redis is not None:
            self.redis.stop()
        left = 0
        if self.backend == "docker" and self.owner_prefixes and shutil.which("docker"):
            self.forced += remove_containers(self.owner_prefixes, wait_s=5.0 if self.executors else 0.0)
            left = sum(owner.startswith(tuple(self.owner_prefixes)) for _, owner in sandbox_containers())
        shutil.rmtree(self.workdir, ignore_errors=True)
        alive = sum(p.poll() is None for f in fleets for p in f.procs)
        redis_alive = (
            self.redis is not None and self.redis.proc is not None and self.redis.proc.poll() is None
        )
        return (
            f"cleanup: {len(self.owner_prefixes)} sandbox pools, {self.forced} containers force-removed, "
            f"{left} left; {alive} worker processes left; "
            f"redis-server {'STILL RUNNING' if redis_alive else 'stopped'}"
            + "".join(f"; {e}" for e in errors)
        )


def run_rounds(session: Session, configs: list[Config], jobs: list[Job], rounds: int, label: str) -> None:
    """Warm every configuration up (untimed), then time them round-robin, ``rounds`` times, the
    order reversed every other round, so that other load on the host spreads over all of them."""
    for config in configs:
        warm = session.run(config, jobs[: min(2 * config.sandboxes, len(jobs))], f"{label}-warm")
        if warm.missing:
            raise RuntimeError(
                f"{config.key}: {warm.missing} warm-up results missing; logs in {session.workdir}"
            )
    for round_ in range(1, rounds + 1):
        order = configs if round_ % 2 else configs[::-1]
        line = []
        for config in order:
            run = session.run(config, jobs, f"{label}-r{round_}")
            config.runs.append(run)
            line.append(
                f"{config.key} {run.wall_s:.2f} s" + (f" ({run.missing} MISSING)" if run.missing else "")
            )
        print(f"  {label} round {round_}/{rounds}: " + ", ".join(line), flush=True)


# --------------------------------------------------------------------------------------------
# Report


def paired_ratios(config: Config, base: Config, fn: Callable[[Run], float] | None = None) -> list[float]:
    """Per round: this configuration's throughput (or ``fn``) over in-process's in the same round."""
    fn = fn or (lambda r: r.throughput)
    return [fn(r) / fn(b) for r, b in zip(config.runs, base.runs, strict=True) if fn(b)]


def run_row(run: Run, n: int) -> dict[str, Any]:
    return {
        "wall_s": run.wall_s,
        "throughput": run.throughput,
        "p50_latency_ms": 1000 * percentile(run.latencies, 50),
        "p99_latency_ms": 1000 * percentile(run.latencies, 99),
        "submit_s": run.submit_s,
        "utilisation": run.utilisation,
        "slot_overhead_ms": run.slot_overhead_ms,
        "others_load": run.foreign_share(n),
        "mean_exec_ms": 1000 * statistics.fmean(run.exec_s) if run.exec_s else None,
        "mean_queued_ms": 1000 * statistics.fmean(run.queued) if run.queued else None,
        "publish_to_read_p50_ms": 1000 * percentile(run.publish_to_read, 50) if run.publish_to_read else None,
        "per_worker": dict(run.per_worker),
        "cpu_ms_per_program": run.cpu,
        "missing": run.missing,
    }


def print_table(configs: list[Config], n: int, cores: int) -> dict[str, Any]:
    base = configs[0]
    best_base = max(r.throughput for r in base.runs)
    header = (
        f"{'configuration':<24}{'sandb.':>7}{'prog/s':>8}{'ratio':>7}{'best':>6}{'adj.':>6}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'util.':>7}{'slot ovh':>9}{'others':>8}{'start s':>8}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[str, Any] = {}
    for config in configs:
        ratios = paired_ratios(config, base)
        ratio = statistics.median(ratios) if ratios else float("nan")
        best = max(r.throughput for r in config.runs) / best_base if best_base else float("nan")
        adjusted = paired_ratios(config, base, lambda r: r.adjusted_throughput(n))
        adj = statistics.median(adjusted) if adjusted else float("nan")
        row = {
            "label": config.label,
            "variant": config.variant,
            "processes": config.processes,
            "sandboxes_per_process": config.per_process,
            "sandboxes": config.sandboxes,
            "throughput": config.median(lambda r: r.throughput),
            "ratio_to_in_process": ratio,
            "ratio_per_round": ratios,
            "ratio_best_of": best,
            "ratio_load_adjusted": adj,
            "ratio_load_adjusted_per_round": adjusted,
            "p50_latency_ms": 1000 * config.median(lambda r: percentile(r.latencies, 50)),
            "p99_latency_ms": 1000 * config.median(lambda r: percentile(r.latencies, 99)),
            "utilisation": config.median(lambda r: r.utilisation),
            "slot_overhead_ms": config.median(lambda r: r.slot_overhead_ms),
            "others_load": config.median(lambda r: r.foreign_share(n)),
            "startup_s": config.startup_s,
            "runs": [run_row(r, n) for r in config.runs],
        }
        rows[config.key] = row
        note = " (oversub.)" if config.sandboxes > cores else ""
        print(
            f"{config.key + note:<24}{config.sandboxes:>7}{row['throughput']:>8.1f}{ratio:>7.2f}"
            f"{best:>6.2f}{adj:>6.2f}"
            f"{row['p50_latency_ms']:>8.0f}{row['p99_latency_ms']:>8.0f}{100 * row['utilisation']:>6.0f}%"
            f"{row['slot_overhead_ms']:>9.2f}{100 * row['others_load']:>7.0f}%{config.startup_s:>8.1f}"
        )
    for config in configs[1:]:
        print(
            f"  {config.key}: ratio per round "
            + ", ".join(f"{r:.2f}" for r in rows[config.key]["ratio_per_round"])
        )
    return rows


LEGEND = """\
  prog/s: median throughput; ratio: median over rounds of (throughput / in-process throughput in
  the same round); best: best run / best in-process run; adj.: like ratio, on throughput / (1 -
  others), an estimate for an idle host, meaningful when the host is CPU-saturated; p50/p99:
  per-program latency, request created -> result read (in-process: batch start -> result),
  median over runs; util.: sum of Executor.execute time / (wall x sandboxes); slot ovh: ms per
  program a sandbox slot spends outside Executor.execute, (wall x sandboxes - sum exec) / N;
  others: share of the host's CPU used during the run by processes this benchmark did not start
  (other users); start s: until ready, outside the timed region"""


def report(configs: list[Config], jobs: list[Job], cores: int) -> dict[str, Any]:
    n = len(jobs)
    print()
    rows = print_table(configs, n, cores)
    print(LEGEND)

    print("\nCPU per program, ms (medians over runs):")
    print(f"  {'configuration':<22}" + "".join(f"{CPU_SHORT[b]:>11}" for b in CPU_BUCKETS))
    for config in configs:
        cells = [config.median(lambda r, b=b: r.cpu.get(b, float("nan"))) for b in CPU_BUCKETS]
        print(f"  {config.key:<22}" + "".join(f"{c:>11.2f}" for c in cells))
    for config in configs[1:]:
        run = config.runs[-1]
        print(
            f"  {config.key}: submitting {n} requests took {1000 * run.submit_s:.0f} ms; worker -> reader "
            f"p50 {1000 * percentile(run.publish_to_read, 50):.1f} ms; results per worker "
            f"{sorted(run.per_worker.values(), reverse=True)}"
        )

    matching = [c for c in configs[1:] if c.sandboxes == configs[0].sandboxes]
    verdicts = {c.key: rows[c.key]["ratio_to_in_process"] >= TARGET_RATIO for c in matching}
    cells = [
        f"{c.key} {rows[c.key]['ratio_to_in_process']:.2f} " + ("PASS" if verdicts[c.key] else "FAIL")
        for c in matching
    ]
    overall = "PASS" if verdicts and all(verdicts.values()) else "FAIL"
    print(
        f"\ntarget: {TARGET_TEXT}: {overall} ({'; '.join(cells) or 'no matching configuration'}; "
        f"{configs[0].sandboxes} sandboxes each)"
    )
    print(
        "  load-adjusted estimate (adj.): "
        + "; ".join(f"{c.key} {rows[c.key]['ratio_load_adjusted']:.2f}" for c in matching)
        + " (the target is judged on the measured ratio)"
    )
    for config in configs[1:]:
        if config.sandboxes != configs[0].sandboxes:
            print(
                f"  informational: {config.key} runs {config.sandboxes} sandboxes on {cores} cores "
                f"(oversubscribed): ratio {rows[config.key]['ratio_to_in_process']:.2f}"
            )

    mismatches = verdict_mismatches(configs, jobs)
    missing = sum(r.missing for c in configs for r in c.runs)
    counts = Counter(configs[0].runs[0].verdicts.values())
    print(
        f"\nverdicts: {n} programs x {sum(len(c.runs) for c in configs)} runs; in-process "
        f"{dict(sorted(counts.items()))}; {len(mismatches)} programs differ between configurations or runs"
        + (f"; {missing} results missing" if missing else "")
    )
    for item in mismatches[:20]:
        print(f"  MISMATCH {item['program']}: in-process {item['reference']}; {item['seen']}")
    return {"configs": rows, "target": verdicts, "mismatches": mismatches, "missing": missing}


def verdict_mismatches(configs: list[Config], jobs: list[Job]) -> list[dict[str, Any]]:
    reference = configs[0].runs[0].verdicts
    out = []
    for job in jobs:
        seen = {c.key: [run.verdicts.get(job.index, "MISSING") for run in c.runs] for c in configs}
        if len({v for values in seen.values() for v in values}) > 1:
            out.append({"program": job.key, "reference": reference.get(job.index, "MISSING"), "seen": seen})
    return out


# --------------------------------------------------------------------------------------------
# Profile (when the target fails, or with --profile)


def time_calls(client: redis.Redis, prefix: str, n: int = 400) -> dict[str, float]:
    """Median round trip, µs, of each Redis call on the request path, from this process."""
    stream, group = f"{prefix}:rtt", "g"
    client.delete(stream)
    streams.ensure_group(client, stream, group)
    payload = ExecutionRequest(sample_id="x", problem_id="HumanEval/0", program="x = 1\n" * 40).to_wire()
    report = ExecutionReport(
        sample_id="x", problem_id="HumanEval/0", policy_version=0, worker_id="w",
        result=ExecutionResult(verdict=Verdict.PASSED, reward=1.0, outcome_class=3, tests_total=1),
    ).to_wire()  # fmt: skip
    script = client.register_script(streams._PUBLISH_ONCE)
    ids = [client.xadd(stream, {"data": payload}) for _ in range(2 * n)]  # entries to acknowledge
    args = (86400, report, 1000, group)
    calls: dict[str, Callable[[int], Any]] = {
        "XADD a request (producer)": lambda i: client.xadd(stream, {"data": payload}),
        "XREADGROUP count=1 (worker)": lambda i: client.xreadgroup(group, "c", {stream: ">"}, count=1),
        "EVAL publish_once (worker, as shipped)": lambda i: client.eval(
            streams._PUBLISH_ONCE, 3, f"{stream}:d:{i}", f"{stream}:r", stream, *args, ids[i]
        ),
        "EVALSHA publish_once": lambda i: script(
            keys=[f"{stream}:e:{i}", f"{stream}:r", stream], args=[*args, ids[n + i]]
        ),
    }
    out: dict[str, float] = {}
    for label, fn in calls.items():
        samples = []
        for i in range(n):
            started = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - started)
        out[label] = 1e6 * statistics.median(samples)
    client.delete(stream, f"{stream}:r", *[f"{stream}:{k}:{i}" for k in "de" for i in range(n)])
    return out


def time_parsing(jobs: list[Job], n: int = 400) -> dict[str, float]:
    """Median µs of the pydantic work on the request path, per message."""
    from coderl.wire import StoredProblem

    def clock(fn: Callable[[], Any]) -> float:
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return 1e6 * statistics.median(samples)

    job = jobs[0]
    wire = ExecutionRequest(sample_id="x", problem_id=job.problem.task_id, program=job.program).to_wire()
    report = ExecutionReport(
        sample_id="x", problem_id="p", policy_version=0, worker_id="w",
        result=ExecutionResult(verdict=Verdict.PASSED, reward=1.0, outcome_class=3, tests_total=1),
    ).to_wire()  # fmt: skip
    stored = StoredProblem(problem=job.problem).to_wire()
    return {
        "build + serialise a request (producer)": clock(
            lambda: ExecutionRequest(sample_id="x", problem_id="p", program=job.program).to_wire()
        ),
        "validate a request (worker)": clock(lambda: ExecutionRequest.model_validate_json(wire)),
        "validate a report (consumer)": clock(lambda: ExecutionReport.model_validate_json(report)),
        "validate a stored problem (worker cache miss)": clock(
            lambda: StoredProblem.model_validate_json(stored)
        ),
    }


def profile(session: Session, jobs: list[Job], sandboxes: int, n_stub: int, rounds: int) -> dict[str, Any]:
    """(1) the worker loop around a zero-cost stub executor, as shipped and with each candidate
    fix: the service's own ceiling and CPU per request; (2) the real executor with each worker
    variant side by side with in-process, paired rounds; (3) Redis round trips and pydantic costs."""
    assert session.redis is not None and session.client is not None
    out: dict[str, Any] = {"stub": {}, "variants": {}}
    stub_jobs = [Job(i, jobs[i % len(jobs)].problem, "pass\n", "stub") for i in range(n_stub)]
    stub_configs = [Config(f"stub-{v}", VARIANTS[v], 1, sandboxes, v) for v in VARIANTS]
    print(f"\nprofile 1: worker loop around a zero-cost stub executor, 1 process x {sandboxes} slots, "
          f"{n_stub} requests, best of 3 alternating runs")  # fmt: skip
    try:
        session.start(stub_configs, stub_jobs, stub=True)
        for config in stub_configs:
            session.run(config, stub_jobs[:50], "warm")
        for round_ in range(3):
            for config in stub_configs if round_ % 2 == 0 else stub_configs[::-1]:
                config.runs.append(session.run(config, stub_jobs, f"r{round_}"))
    finally:
        session.stop(stub_configs)
    for config in stub_configs:
        best = max(config.runs, key=lambda r: r.throughput)
        cpu = {
            k: config.median(lambda r, k=k: r.cpu[k])
            for k in ("worker processes", "redis-server", "bench process")
        }
        out["stub"][config.variant] = {"requests_per_s": best.throughput, "cpu_ms_per_request": cpu}
        print(
            f"  {config.variant:<9} {best.throughput:7.0f} requests/s; CPU ms per request: worker "
            f"{cpu['worker processes']:.2f}, redis-server {cpu['redis-server']:.2f}, this process (submit + "
            f"read) {cpu['bench process']:.2f}   [{config.label}]"
        )

    print(f"\nprofile 2: the real executor with each worker variant, 1 process x {sandboxes} sandboxes, "
          f"{len(jobs)} programs, {rounds} paired rounds")  # fmt: skip
    variant_configs = [Config("in-process", f"in-process Executor(workers={sandboxes})", 1, sandboxes)] + [
        Config(f"redis-1x{sandboxes}-{v}", VARIANTS[v], 1, sandboxes, v) for v in VARIANTS
    ]
    try:
        session.start(variant_configs, jobs)
        run_rounds(session, variant_configs, jobs, rounds, "profile")
    finally:
        session.stop(variant_configs)
    rows = print_table(variant_configs, len(jobs), os.cpu_count() or 1)
    out["variants"] = rows
    base = rows["in-process"]
    for config in variant_configs[1:]:
        row = rows[config.key]
        cpu = {k: config.median(lambda r, k=k: r.cpu.get(k, 0.0)) for k in CPU_BUCKETS}
        print(
            f"  {config.key}: slot time outside execute {row['slot_overhead_ms']:.2f} ms/program "
            f"(in-process {base['slot_overhead_ms']:.2f}); CPU ms/program: workers "
            f"{cpu['worker processes']:.2f}, redis {cpu['redis-server']:.2f}, "
            f"this process {cpu['bench process']:.2f}"
        )

    out["redis_calls_us"] = time_calls(session.client, f"svcbench{session.token}:rtt")
    out["parsing_us"] = time_parsing(jobs)
    print("\nprofile 3: median cost per call on the request path, µs (this process, private redis-server)")
    for name, value in {**out["redis_calls_us"], **out["parsing_us"]}.items():
        print(f"  {name:<48}{value:8.0f}")
    return out


# --------------------------------------------------------------------------------------------
# Driver


def make_configs(sandboxes: int) -> list[Config]:
    configs = [Config("in-process", f"in-process Executor(workers={sandboxes})", 1, sandboxes)]
    seen = set()
    for processes in PROCESS_COUNTS:
        per = max(1, sandboxes // processes)
        if (processes, per) not in seen:
            seen.add((processes, per))
            plural = ("es" if processes > 1 else "", "es" if per > 1 else "")
            label = f"{processes} worker process{plural[0]} x {per} sandbox{plural[1]}"
            configs.append(Config(f"redis-{processes}x{per}", label, processes, per))
    return configs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=328, help="programs per run (default 328)")
    parser.add_argument("--repeat", type=int, default=4, help="timed rounds (default 4; medians reported)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--sandboxes", type=int, default=os.cpu_count() or 2, help="W (default: CPU count)")
    parser.add_argument("--backend", choices=("docker", "process"), default="docker")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one run's results")
    parser.add_argument(
        "--profile", choices=("auto", "yes", "no"), default="auto",
        help="profile where the time goes (auto: when the target fails)",
    )  # fmt: skip
    parser.add_argument("--profile-rounds", type=int, default=2, help="paired rounds of profile 2")
    args = parser.parse_args(argv)
    if min(args.repeat, args.n, args.sandboxes, args.profile_rounds) < 1:
        parser.error("--repeat, --n, --sandboxes and --profile-rounds must be >= 1")
    for tool in ("redis-server", *(["docker"] if args.backend == "docker" else [])):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH")

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    bench_started = time.perf_counter()
    cores = os.cpu_count() or 1
    load = background_load()
    print(
        f"host: {cores} CPUs, {platform.platform()}, Python {platform.python_version()}; backend "
        f"{args.backend}; W = {args.sandboxes} sandboxes; {args.repeat} rounds; background load before "
        f"start {100 * load:.0f}% of the host"
    )
    jobs = build_workload(args.n)
    labels = Counter(job.label.split("#")[0] for job in jobs)
    print(
        f"workload: {len(jobs)} programs ({', '.join(f'{v} {k}' for k, v in labels.items())}) over "
        f"{len({j.problem.task_id for j in jobs})} HumanEval problems, the same in every run; each "
        "configuration warmed up on 2 x its sandboxes programs, untimed"
    )
    configs = make_configs(args.sandboxes)
    session = Session(args.backend, args.timeout)
    results: dict[str, Any] = {}
    interrupted = False
    try:
        session.start_redis()
        assert session.redis is not None
        print(f"redis-server {session.redis.url} (pid {session.redis.pid}, --save '' --appendonly no)")
        for config in configs:
            print(f"  {config.key:<12} {config.label}")
        session.start(configs, jobs)
        run_rounds(session, configs, jobs, args.repeat, "main")
        session.stop(configs)
        results = report(configs, jobs, cores)
        failed = not all(results["target"].values())
        if args.profile == "yes" or (args.profile == "auto" and failed):
            results["profile"] = profile(session, jobs, args.sandboxes, 2000, args.profile_rounds)
    except KeyboardInterrupt:
        interrupted = True
        logging.getLogger("executor").setLevel(logging.ERROR)  # sandboxes removed under running programs
        print("\ninterrupted; cleaning up", flush=True)
    finally:
        print(session.close(), flush=True)
    elapsed = time.perf_counter() - bench_started
    print(f"total benchmark time {elapsed:.0f} s")
    if args.json and results:
        results.update(
            {
                "host": {"cpus": cores, "platform": platform.platform(), "background_load": load},
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "n": len(jobs),
                "total_s": elapsed,
            }
        )
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"numbers written to {args.json}")
    sys.stdout.flush()
    if interrupted:
        os._exit(130)  # everything is cleaned up; do not wait for an interrupted execute_many's threads
    return 0 if results and all(results["target"].values()) and not results["mismatches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
