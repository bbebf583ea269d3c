"""The profile of the executor service benchmark (when the target fails, or with --profile yes):

  (1) the worker loop around a zero-cost stub executor (bench/service/stub_worker.py): the
      service's own ceiling and CPU per request, for each worker variant;
  (2) the real executor behind each worker variant, paired with in-process;
  (3) the median cost of each Redis call and pydantic step on the request path.

The worker variants (``VARIANTS`` of bench/service/processes.py) are the shipped worker with public
settings (as shipped; ``prefetch=0``), so that nothing here depends on the worker's internals.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.service.measure import CPU_BUCKETS, Config, in_process_config
from bench.service.processes import VARIANTS
from bench.service.report import print_table
from bench.service.session import Session, run_rounds
from bench.service.stub_worker import passed_result
from bench.service.workload import Job
from coderl import streams
from coderl.wire import ExecutionReport, ExecutionRequest, StoredProblem

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


def passed_report(sample_id: str, task_id: str) -> ExecutionReport:
    return ExecutionReport(sample_id=sample_id, task_id=task_id, worker_id="w", result=passed_result())


def time_calls(client: redis.Redis, prefix: str, n: int = 400) -> dict[str, float]:
    """Median round trip, µs, of each Redis call on the request path, from this process, made
    the way the producer and the worker make them (``coderl.streams``)."""
    names = streams.StreamNames(prefix=prefix)
    client.delete(names.requests)
    streams.ensure_group(client, names.requests, names.group)
    payload = ExecutionRequest(sample_id="x", task_id="HumanEval/0", program="x = 1\n" * 40).to_wire()
    reports = [passed_report(f"x{i}", "HumanEval/0") for i in range(n)]
    ids = [streams.as_text(client.xadd(names.requests, {streams.DATA_FIELD: payload})) for _ in range(n)]
    calls: dict[str, Callable[[int], Any]] = {
        "XADD a request (producer)": lambda i: client.xadd(names.requests, {streams.DATA_FIELD: payload}),
        "XREADGROUP count=1 (worker)": lambda i: client.xreadgroup(
            names.group, "c", {names.requests: ">"}, count=1
        ),
        "publish_once: serialise, EVAL (worker)": lambda i: streams.publish_once(
            client, names, reports[i], names.results, ids[i], 86400, 1000
        ),
    }
    out = {label: median_us(fn, n) for label, fn in calls.items()}
    client.delete(names.requests, names.results, *[names.done(r.sample_id) for r in reports])
    return out


def time_parsing(jobs: list[Job], n: int = 400) -> dict[str, float]:
    """Median µs of the pydantic work on the request path, per message."""
    job = jobs[0]
    wire = ExecutionRequest(sample_id="x", task_id=job.problem.task_id, program=job.program).to_wire()
    report = passed_report("x", "p").to_wire()
    stored = StoredProblem(problem=job.problem).to_wire()
    return {
        "build + serialise a request (producer)": median_us(
            lambda _: ExecutionRequest(sample_id="x", task_id="p", program=job.program).to_wire(), n
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
    stub_configs = [Config(f"stub-{v}", VARIANTS[v][0], 1, sandboxes, v) for v in VARIANTS]
    print(f"\nprofile 1: worker loop around a zero-cost stub executor, 1 process x {sandboxes} slots, "
          f"{n_stub} requests, best of 3 alternating runs")  # fmt: skip
    try:
        session.start(stub_configs, stub_jobs, stub=True)
        for config in stub_configs:
            if session.run(config, stub_jobs[:50], "warm").missing:
                raise RuntimeError(f"{config.key}: warm-up results missing; logs in {session.workdir}")
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
            f"  {config.variant:<11} {best.throughput:7.0f} requests/s; CPU ms per request: worker "
            f"{cpu['worker processes']:.2f}, redis-server {cpu['redis-server']:.2f}, this process (submit + "
            f"read) {cpu['bench process']:.2f}   [{config.label}]"
        )
    return out


def profile_variants(session: Session, jobs: list[Job], sandboxes: int, rounds: int) -> dict[str, Any]:
    """(2): the real executor behind each worker variant, ``rounds`` paired rounds with in-process."""
    print(f"\nprofile 2: the real executor with each worker variant, 1 process x {sandboxes} sandboxes, "
          f"{len(jobs)} programs, {rounds} paired rounds")  # fmt: skip
    variant_configs = [in_process_config(sandboxes)] + [
        Config(f"redis-1x{sandboxes}-{v}", VARIANTS[v][0], 1, sandboxes, v) for v in VARIANTS
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
    """(1) the worker loop around a zero-cost stub executor, in each worker variant: the
    service's own ceiling and CPU per request; (2) the real executor with each worker
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
