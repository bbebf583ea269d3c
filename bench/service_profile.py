"""The profile of bench/executor_service.py (when the target fails, or with --profile yes):

  (1) the worker loop around a zero-cost stub executor (``StubExecutor``): the service's own
      ceiling and CPU per request, for each worker variant;
  (2) the real executor behind each worker variant, paired with in-process;
  (3) the median cost of each Redis call and pydantic step on the request path.

The worker variants are subclasses of the shipped ``ExecutorWorker`` (executor/worker.py is not
changed), run by ``worker_main`` in the ``_worker`` mode of bench/executor_service.py.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from bench.service_measure import CPU_BUCKETS, Config, in_process_config
from bench.service_processes import executor_config
from bench.service_report import print_table
from bench.service_session import Session, run_rounds
from bench.workload import Job
from coderl import streams
from coderl.execution import ExecutionResult
from coderl.outcomes import Verdict
from coderl.wire import ExecutionReport, ExecutionRequest, StoredProblem
from executor.config import ExecutorConfig
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker
from problems import Problem


def passed_result() -> ExecutionResult:
    return ExecutionResult(verdict=Verdict.PASSED, reward=1.0, outcome_class=3, tests_total=1)


# --------------------------------------------------------------------------------------------
# Worker variants: subclasses of the shipped worker, which stays unmodified

VARIANTS = {
    "cli": "the worker as shipped (python -m executor)",
    "no-prefetch": "shipped worker without read-ahead (prefetch=0: one request in flight per sandbox)",
    "batched": "shipped worker + XREADGROUP count = free slots + EVALSHA publish",
}


class NoPrefetchWorker(ExecutorWorker):
    """The shipped worker with read-ahead off (``prefetch=0``): one request in flight per sandbox,
    so a sandbox that finishes waits for the main loop to read and dispatch the next one."""

    def __init__(self, config: WorkerConfig, executor: Any = None) -> None:
        super().__init__(config.model_copy(update={"prefetch": 0}), executor)


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
    "no-prefetch": NoPrefetchWorker,
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
        return passed_result()

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
# (3) costs on the request path


def median_us(fn: Callable[[int], Any], n: int) -> float:
    """Median wall time, µs, of ``fn(i)`` for i in 0..n-1."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    return 1e6 * statistics.median(samples)


def passed_report_wire(problem_id: str) -> str:
    return ExecutionReport(
        sample_id="x", problem_id=problem_id, policy_version=0, worker_id="w", result=passed_result()
    ).to_wire()


def time_calls(client: redis.Redis, prefix: str, n: int = 400) -> dict[str, float]:
    """Median round trip, µs, of each Redis call on the request path, from this process."""
    stream, group = f"{prefix}:rtt", "g"
    client.delete(stream)
    streams.ensure_group(client, stream, group)
    payload = ExecutionRequest(sample_id="x", problem_id="HumanEval/0", program="x = 1\n" * 40).to_wire()
    report = passed_report_wire("HumanEval/0")
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
    out = {label: median_us(fn, n) for label, fn in calls.items()}
    client.delete(stream, f"{stream}:r", *[f"{stream}:{k}:{i}" for k in "de" for i in range(n)])
    return out


def time_parsing(jobs: list[Job], n: int = 400) -> dict[str, float]:
    """Median µs of the pydantic work on the request path, per message."""
    job = jobs[0]
    wire = ExecutionRequest(sample_id="x", problem_id=job.problem.task_id, program=job.program).to_wire()
    report = passed_report_wire("p")
    stored = StoredProblem(problem=job.problem).to_wire()
    return {
        "build + serialise a request (producer)": median_us(
            lambda _: ExecutionRequest(sample_id="x", problem_id="p", program=job.program).to_wire(), n
        ),
        "validate a request (worker)": median_us(lambda _: ExecutionRequest.model_validate_json(wire), n),
        "validate a report (consumer)": median_us(lambda _: ExecutionReport.model_validate_json(report), n),
        "validate a stored problem (worker cache miss)": median_us(
            lambda _: StoredProblem.model_validate_json(stored), n
        ),
    }


# --------------------------------------------------------------------------------------------
# The profile


def profile_stub(session: Session, jobs: list[Job], sandboxes: int, n_stub: int) -> dict[str, Any]:
    """(1): each worker variant around StubExecutor, best of 3 alternating runs."""
    out = {}
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
        out[config.variant] = {"requests_per_s": best.throughput, "cpu_ms_per_request": cpu}
        print(
            f"  {config.variant:<9} {best.throughput:7.0f} requests/s; CPU ms per request: worker "
            f"{cpu['worker processes']:.2f}, redis-server {cpu['redis-server']:.2f}, this process (submit + "
            f"read) {cpu['bench process']:.2f}   [{config.label}]"
        )
    return out


def profile_variants(session: Session, jobs: list[Job], sandboxes: int, rounds: int) -> dict[str, Any]:
    """(2): the real executor behind each worker variant, ``rounds`` paired rounds with in-process."""
    print(f"\nprofile 2: the real executor with each worker variant, 1 process x {sandboxes} sandboxes, "
          f"{len(jobs)} programs, {rounds} paired rounds")  # fmt: skip
    variant_configs = [in_process_config(sandboxes)] + [
        Config(f"redis-1x{sandboxes}-{v}", VARIANTS[v], 1, sandboxes, v) for v in VARIANTS
    ]
    try:
        session.start(variant_configs, jobs)
        run_rounds(session, variant_configs, jobs, rounds, "profile")
    finally:
        session.stop(variant_configs)
    rows = print_table(variant_configs, len(jobs), os.cpu_count() or 1)
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
    return rows


def profile(session: Session, jobs: list[Job], sandboxes: int, n_stub: int, rounds: int) -> dict[str, Any]:
    """(1) the worker loop around a zero-cost stub executor, as shipped and with each candidate
    fix: the service's own ceiling and CPU per request; (2) the real executor with each worker
    variant side by side with in-process, paired rounds; (3) Redis round trips and pydantic costs."""
    assert session.redis is not None and session.client is not None
    out: dict[str, Any] = {"stub": {}, "variants": {}}
    out["stub"] = profile_stub(session, jobs, sandboxes, n_stub)
    out["variants"] = profile_variants(session, jobs, sandboxes, rounds)
    out["redis_calls_us"] = time_calls(session.client, f"svcbench{session.token}:rtt")
    out["parsing_us"] = time_parsing(jobs)
    print("\nprofile 3: median cost per call on the request path, µs (this process, private redis-server)")
    for name, value in {**out["redis_calls_us"], **out["parsing_us"]}.items():
        print(f"  {name:<48}{value:8.0f}")
    return out
