"""Running the executor service benchmark's configurations: the in-process path, the Redis path (submit
requests, read the results stream with a consumer group), and the ``Session`` that starts them
and removes everything it started, whatever happens."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import redis

from bench.common import owned_sandbox_containers, remove_sandbox_containers
from bench.service.measure import Config, CpuMeter, Run
from bench.service.processes import Fleet, RedisServer, executor_config
from bench.service.workload import Job
from coderl import streams
from coderl.execution import ExecutionResult
from coderl.wire import ExecutionReport, ExecutionRequest
from executor.engine import ExecutionItem, Executor

RESULTS_GROUP = "bench"

# --------------------------------------------------------------------------------------------
# The two paths


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
            sample_id=f"{tag}-{job.index}", task_id=job.problem.task_id, program=job.program
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
    """The private redis-server and the started configurations (worker fleets, in-process
    executors); ``close`` removes all of them, and every sandbox container they started."""

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
                    self.forced += remove_sandbox_containers([executor.pool.owner])
                del self.executors[config.key]

    def close(self) -> str:
        errors = []
        fleets = list(self.fleets.values())
        for fleet in fleets:  # SIGTERM to all first: they drain in parallel
            fleet.terminate()
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
            wait_s = 5.0 if self.executors else 0.0
            self.forced += remove_sandbox_containers(self.owner_prefixes, wait_s=wait_s)
            left = len(owned_sandbox_containers(self.owner_prefixes))
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
