"""The compose stack (docker-compose.yml): Redis + two executor replicas serve requests end to end.

Brings the stack up under a random project name with Redis published on a free local port, stores
two HumanEval problems, submits requests through Redis as a client would, and checks that every
sample gets exactly one correct result, that both replicas worked, and their health and metrics
endpoints. Skipped only when no Docker engine is reachable; missing images are a failure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import redis

from coderl import streams
from coderl.outcomes import Verdict
from coderl.wire import ExecutionReport, ExecutionRequest
from problems import Problem, load_packaged_humaneval

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
IMAGES = ("coderl-redis:latest", "coderl-executor:latest", "coderl-sandbox:latest")
REPLICAS = 2
WORKERS_PER_REPLICA = 2
SAMPLES = 20
UP_TIMEOUT_S = 240
RESULTS_TIMEOUT_S = 180
# Each program sleeps a little at import so no replica can drain the queue alone: with two
# programs in flight per replica, the other replica's blocked read gets the rest.
SLOW_START = "import time\ntime.sleep(0.2)\n"
WRONG_BODY = "    return None\n"


@dataclass(frozen=True)
class Stack:
    project: str
    env: dict[str, str]
    redis_port: int

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(
            command, env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}\n"
                f"{self.logs()}",
                pytrace=False,
            )
        return result

    def in_replica(self, index: int, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in executor replica ``index`` (1-based)."""
        return self.compose("exec", "-T", "--index", str(index), "executor", *command, check=check)

    def logs(self) -> str:
        command = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), "logs", "--no-color"]
        result = subprocess.run(
            [*command, "--tail", "40"], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        return f"--- docker compose logs (last 40 lines per container) ---\n{result.stdout}{result.stderr}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def engine(docker_client: docker.DockerClient) -> docker.DockerClient:
    return docker_client


@pytest.fixture(scope="module")
def stack(engine: docker.DockerClient) -> Iterator[Stack]:
    missing = []
    for image in IMAGES:
        try:
            engine.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.fail(f"images {missing} not found: run deploy/build-images.sh", pytrace=False)
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        pytest.fail(f"`docker compose` (v2) is missing: {version.stderr.strip()}", pytrace=False)

    port = free_port()
    env = {
        **os.environ,
        "CODERL_REDIS_PORT": str(port),
        "CODERL_EXECUTOR_WORKERS": str(WORKERS_PER_REPLICA),
    }
    for variable in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        env.pop(variable, None)
    stack = Stack(project=f"coderl-test-{uuid.uuid4().hex[:8]}", env=env, redis_port=port)
    try:
        # --no-build: a missing image must fail (checked above), never trigger a build here.
        stack.compose(
            "up", "-d", "--no-build", "--scale", f"executor={REPLICAS}",
            "--wait", "--wait-timeout", str(UP_TIMEOUT_S),
            timeout=UP_TIMEOUT_S + 60,
        )  # fmt: skip
        yield stack
    finally:
        down = stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
        assert down.returncode == 0, f"docker compose down failed:\n{down.stdout}\n{down.stderr}"


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=stack.redis_port, socket_timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            connection.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    yield connection
    connection.close()


def submit_samples(client: redis.Redis, problems: list[Problem], results_stream: str) -> dict[str, Verdict]:
    names = streams.StreamNames()
    for problem in problems:
        streams.store_problem(client, names, problem)
    expected: dict[str, Verdict] = {}
    requests_ = []
    for index in range(SAMPLES):
        problem = problems[index % len(problems)]
        if index % 4 == 3:
            program, verdict = SLOW_START + problem.completion_prefix + WRONG_BODY, Verdict.FAILED_TEST
        else:
            program, verdict = SLOW_START + problem.solutions[0], Verdict.PASSED
        sample_id = f"{results_stream}:{index}"
        expected[sample_id] = verdict
        requests_.append(
            ExecutionRequest(
                sample_id=sample_id,
                task_id=problem.task_id,
                program=program,
                results_stream=results_stream,
            )
        )
    pipe = client.pipeline(transaction=False)
    for request in requests_:
        pipe.xadd(names.requests, {streams.DATA_FIELD: request.to_wire()})
    pipe.execute()
    return expected


def read_results(client: redis.Redis, stream: str, want: int, timeout_s: float) -> list[ExecutionReport]:
    reports: list[ExecutionReport] = []
    last_id = "0-0"
    deadline = time.monotonic() + timeout_s
    while len(reports) < want and time.monotonic() < deadline:
        for _, entries in client.xread({stream: last_id}, block=1000) or []:
            for entry_id, fields in entries:
                last_id = entry_id
                reports.append(ExecutionReport.model_validate_json(streams.decode_entry(fields)))
    return reports


def replica_metrics(stack: Stack, index: int) -> dict[str, float]:
    script = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:8080/metrics', timeout=5).read().decode())\n"
    )
    out = stack.in_replica(index, "python3", "-c", script).stdout
    metrics: dict[str, float] = {}
    for line in out.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    return metrics


def test_stack_serves_requests_on_both_replicas(stack: Stack, client: redis.Redis) -> None:
    names = streams.StreamNames()
    problems = load_packaged_humaneval()[:2]
    results_stream = names.client_results(f"compose-test-{uuid.uuid4().hex[:8]}")
    expected = submit_samples(client, problems, results_stream)

    reports = read_results(client, results_stream, SAMPLES, RESULTS_TIMEOUT_S)
    assert len(reports) == SAMPLES, f"{len(reports)} of {SAMPLES} results\n{stack.logs()}"
    time.sleep(2)  # a duplicate would arrive right after the first result: there must be none
    reports = read_results(client, results_stream, SAMPLES + 1, 1)

    counts = Counter(report.sample_id for report in reports)
    assert set(counts) == set(expected), set(counts) ^ set(expected)
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
    wrong = {
        r.sample_id: (r.result.verdict, r.result.error)
        for r in reports
        if r.result.verdict != expected[r.sample_id]
    }
    assert not wrong, wrong

    workers = Counter(report.worker_id for report in reports)
    assert len(workers) == REPLICAS, f"results came from {dict(workers)}: both replicas should work"
    heartbeats = list(client.scan_iter(match=names.worker("*")))
    assert len(heartbeats) == REPLICAS, heartbeats
    assert {key.decode().removeprefix(names.worker("")) for key in heartbeats} == set(workers)

    # Nothing left behind: requests acknowledged and deleted, no dead letters.
    stats = streams.queue_stats(client, names)
    assert (stats.length, stats.pending, stats.lag) == (0, 0, 0), stats
    assert client.xlen(names.dead) == 0, client.xrange(names.dead)

    # Health and metrics, from inside each replica (port 8080 is not published).
    published = 0.0
    for index in range(1, REPLICAS + 1):
        for path in ("/livez", "/readyz"):
            probe = stack.in_replica(
                index, "python3", "-m", "executor", "health", "--path", path, check=False
            )
            assert probe.returncode == 0, f"replica {index} {path}: {probe.stdout}{probe.stderr}"
        metrics = replica_metrics(stack, index)
        labelled = {worker for name in metrics for worker in re.findall(r'worker="([^"]*)"', name)}
        assert len(labelled) == 1 and labelled <= set(workers), (labelled, dict(workers))
        worker = labelled.pop()
        assert metrics[f'coderl_executor_pool_sandboxes_started{{worker="{worker}"}}'] >= WORKERS_PER_REPLICA
        replica_published = metrics.get(f'coderl_executor_published{{worker="{worker}"}}', 0.0)
        assert replica_published == workers[worker], (worker, metrics)
        programs = sum(v for k, v in metrics.items() if k.startswith("coderl_executor_programs_total{"))
        assert programs == workers[worker], (worker, metrics)
        published += replica_published
    assert published == SAMPLES


def test_containers_are_healthy_replicas(stack: Stack) -> None:
    out = stack.compose("ps", "--format", "json").stdout.strip()
    # compose prints one JSON object per line (older releases: one JSON list)
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines()]
    by_service = Counter(row["Service"] for row in rows)
    assert by_service == {"redis": 1, "executor": REPLICAS}, rows
    assert all(row.get("Health") == "healthy" for row in rows), [(r["Name"], r.get("Health")) for r in rows]
    redis_row = next(row for row in rows if row["Service"] == "redis")
    published = [p for p in redis_row.get("Publishers") or [] if p.get("PublishedPort")]
    assert published and all(p["URL"] == "127.0.0.1" for p in published), redis_row.get("Publishers")


PASSWORD = "compose-" + uuid.uuid4().hex


def test_redis_for_several_hosts_needs_and_takes_a_password(engine: docker.DockerClient) -> None:
    """CODERL_REDIS_PASSWORD: Redis requires it (set at start, not in the image), the workers get it,
    a batch runs through redis://:PW@HOST:PORT/0, a wrong password is one line at once; publishing on
    a non-loopback interface without a password is refused."""
    from coderl.redis_client import RedisAuthError
    from executor.client import ClientConfig, RedisExecutionClient
    from executor.engine import ExecutionItem

    refused = subprocess.run(
        ["docker", "run", "--rm", "-e", "CODERL_REDIS_BIND=0.0.0.0", "coderl-redis:latest"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 64 and "without a password" in refused.stderr, refused
    assert PASSWORD not in json.dumps(engine.images.get("coderl-redis:latest").attrs)

    port = free_port()
    env = {**os.environ, "CODERL_REDIS_PORT": str(port), "CODERL_REDIS_PASSWORD": PASSWORD}
    env["CODERL_EXECUTOR_WORKERS"] = "2"
    for variable in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        env.pop(variable, None)
    stack = Stack(project=f"coderl-test-pw-{uuid.uuid4().hex[:8]}", env=env, redis_port=port)
    try:
        stack.compose(
            "up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 60
        )  # fmt: skip
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=10).ping()
        problems = load_packaged_humaneval()[:2]
        items = [ExecutionItem(p, p.solutions[0], "hidden") for p in problems]
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        client = RedisExecutionClient(ClientConfig(redis_url=url, timeout_s=RESULTS_TIMEOUT_S))
        try:
            assert [r.passed for r in client.execute_many(items)] == [True, True], stack.logs()
        finally:
            client.close()
        wrong = RedisExecutionClient(ClientConfig(redis_url=f"redis://:nope@127.0.0.1:{port}/0"))
        started = time.monotonic()
        with pytest.raises(RedisAuthError) as failed:
            wrong.execute_many(items)
        assert time.monotonic() - started < 5
        assert "\n" not in str(failed.value) and "refused the password" in str(failed.value)
        assert "nope" not in str(failed.value)
    finally:
        down = stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
        assert down.returncode == 0, f"docker compose down failed:\n{down.stdout}\n{down.stderr}"


def executor_containers(
    engine: docker.DockerClient, stack: Stack
) -> list[docker.models.containers.Container]:
    labels = [f"com.docker.compose.project={stack.project}", "com.docker.compose.service=executor"]
    return engine.containers.list(all=True, filters={"label": labels})


def wait_for_status(container: docker.models.containers.Container, status: str, timeout_s: float) -> float:
    """Seconds until ``container`` has ``status``; fails after ``timeout_s``."""
    started = time.monotonic()
    while True:
        container.reload()
        if container.status == status:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, (
            container.name,
            container.status,
            container.attrs["State"],
        )
        time.sleep(0.25)


def test_a_killed_worker_is_started_again_by_its_sibling_a_stopped_one_is_not(
    stack: Stack, client: redis.Redis, engine: docker.DockerClient
) -> None:
    """Docker's restart policy leaves a `docker kill`ed container down; the surviving replica starts
    it again (executor/siblings.py) and the stack serves a batch on both. A replica stopped
    gracefully (SIGTERM, as `docker compose stop` does) stays stopped."""
    from executor.siblings import CHECK_EVERY_S, SETTLE_S

    killed, survivor = executor_containers(engine, stack)
    killed.kill()  # SIGKILL: exit code 137, and Docker marks it stopped by hand
    assert wait_for_status(killed, "exited", 30) >= 0 and killed.attrs["State"]["ExitCode"] == 137
    took = wait_for_status(killed, "running", 30)
    assert killed.attrs["RestartCount"] == 0  # not Docker's restart policy: its sibling
    names = streams.StreamNames()
    deadline = time.monotonic() + 120
    while not any(
        key.decode().startswith(names.worker(killed.id[:12]))
        for key in client.scan_iter(match=names.worker("*"))
    ):
        assert time.monotonic() < deadline, f"the restarted worker never heartbeated\n{stack.logs()}"
        time.sleep(0.5)
    results_stream = names.client_results(f"compose-kill-{uuid.uuid4().hex[:8]}")
    expected = submit_samples(client, load_packaged_humaneval()[:2], results_stream)
    reports = read_results(client, results_stream, SAMPLES, RESULTS_TIMEOUT_S)
    assert {r.sample_id: r.result.verdict for r in reports} == expected, stack.logs()
    workers = {r.worker_id.rsplit("-", 1)[0] for r in reports}
    assert workers == {killed.id[:12], survivor.id[:12]}, workers
    out = survivor.exec_run(
        [
            "python3",
            "-c",
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/metrics').read().decode())",
        ]
    )
    assert re.search(r"coderl_executor_siblings_restarted\{[^}]*\} 1\b", out.output.decode()), (
        out.output.decode()
    )

    killed.stop(timeout=90)  # SIGTERM: the worker drains and exits 0
    assert wait_for_status(killed, "exited", 5) >= 0 and killed.attrs["State"]["ExitCode"] == 0
    time.sleep(2 * CHECK_EVERY_S + SETTLE_S)
    killed.reload()
    assert killed.status == "exited", f"a gracefully stopped worker was started again\n{stack.logs()}"
    survivor.reload()
    assert survivor.status == "running"
    print(f"killed worker running again after {took:.1f} s")
