"""Executor service benchmark: the Redis-stream path vs. the in-process executor, side by side.

    python -m bench.service [--n N] [--repeat R] [--json PATH] [--sandboxes W]
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
loop around a zero-cost stub executor (bench/service/stub_worker.py): requests/s ceiling and CPU
per request of the worker, redis-server and this process; (2) the real executor behind two worker
variants, paired with in-process again: as shipped (one request read ahead per sandbox) and
without read-ahead (``--set prefetch=0``); (3) median cost of each Redis call and pydantic step on
the request path (bench/service/profiling.py).

Everything started here (worker processes, the redis-server, every sandbox container, found
by its pool's owner label) is removed at the end, also on Ctrl-C or SIGTERM. Needs no network:
Docker with ``coderl-sandbox:latest`` (deploy/build-images.sh; a worker that finds a stale
image exits and the script says so) or ``--backend process``, and redis-server on PATH.
About 2-3 minutes with the defaults on 2 cores, about 1 more with the profile.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import background_load, host_description, write_json
from bench.service.measure import Config, in_process_config
from bench.service.profiling import profile
from bench.service.report import report
from bench.service.session import Session, run_rounds
from bench.service.workload import Job, build_return_none_workload

PROCESS_COUNTS = (1, 2, 4)


def make_configs(sandboxes: int) -> list[Config]:
    configs = [in_process_config(sandboxes)]
    seen = set()
    for processes in PROCESS_COUNTS:
        per = max(1, sandboxes // processes)
        if (processes, per) not in seen:
            seen.add((processes, per))
            plural = ("es" if processes > 1 else "", "es" if per > 1 else "")
            label = f"{processes} worker process{plural[0]} x {per} sandbox{plural[1]}"
            configs.append(Config(f"redis-{processes}x{per}", label, processes, per))
    return configs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.splitlines()[0])
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
    return args


def prepare_workload(n: int) -> list[Job]:
    jobs = build_return_none_workload(n)
    labels = Counter(job.label.split("#")[0] for job in jobs)
    print(
        f"workload: {len(jobs)} programs ({', '.join(f'{v} {k}' for k, v in labels.items())}) over "
        f"{len({j.problem.task_id for j in jobs})} HumanEval problems, the same in every run; each "
        "configuration warmed up on 2 x its sandboxes programs, untimed"
    )
    return jobs


def run_benchmark(session: Session, jobs: list[Job], args: argparse.Namespace, cores: int) -> dict[str, Any]:
    """Start the private redis-server and every configuration, time them, report, and profile
    when asked or when the target fails."""
    configs = make_configs(args.sandboxes)
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
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    bench_started = time.perf_counter()
    cores = os.cpu_count() or 1
    load = background_load()
    print(
        f"host: {host_description()}; backend "
        f"{args.backend}; W = {args.sandboxes} sandboxes; {args.repeat} rounds; background load before "
        f"start {100 * load:.0f}% of the host"
    )
    jobs = prepare_workload(args.n)
    session = Session(args.backend, args.timeout)
    results: dict[str, Any] = {}
    interrupted = False
    try:
        results = run_benchmark(session, jobs, args, cores)
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
        write_json(args.json, results)
        print(f"numbers written to {args.json}")
    sys.stdout.flush()
    if interrupted:
        os._exit(130)  # everything is cleaned up; do not wait for an interrupted execute_many's threads
    return 0 if results and all(results["target"].values()) and not results["mismatches"] else 1
