"""Fixtures for the adversarial corpus (docs: /work/shared/reference/sandboxes.md section 4).

Every test here runs untrusted-looking programs through the real executor with the docker backend
and short limits (1 s CPU, 3 s wall, 256 MiB address space, 1 MiB output, containers of 512 MiB and
64 pids). Tests are skipped only when the Docker engine is unreachable; an engine without the
sandbox image (or with a stale one) is a failure, not a skip.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
import requests

from coderl.outcomes import Verdict
from executor import Executor, ExecutorConfig, LimitsConfig, SandboxConfig
from executor.sandbox.connection import SandboxFault
from problems import Problem, TestCase

SANDBOX_IMAGE = "coderl-sandbox:latest"
WORKERS = 2
CPU_LIMIT_S = 1.0
WALL_FACTOR = 2.0
HARNESS_PROCESSES = 3  # the server (PID 1), its zygote and the test runner, in every idle sandbox
CONTAINER_LABEL = "org.coderl.sandbox"

# Secrets planted in the test process's environment before the sandboxes start: none may be
# visible to a program (B6). They look like what a real worker host would hold.
CANARY_ENV = {
    "REDIS_URL": "redis://:canary-redis-password-5f1c@172.17.0.1:6379/0",
    "HF_TOKEN": "hf_canaryTOKEN0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "canary/aws/secret/key/9d2e",
    "CODERL_API_KEY": "canary-api-key-77aa",
}

SUM = Problem(
    task_id="serving-sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="2 3\n", stdout="5\n")]
)
SUM_OK = "a, b = map(int, input().split())\nprint(a + b)\n"
SUM_WRONG = "a, b = map(int, input().split())\nprint(a - b)\n"

# Prints how many processes other than itself exist in its PID namespace (zombies excluded).
COUNT_PROCESSES = """\
import os
others = 0
for name in os.listdir('/proc'):
    if name.isdigit() and int(name) != os.getpid():
        try:
            state = open(f'/proc/{name}/stat', 'rb').read().rsplit(b')', 1)[1].split()[0]
        except OSError:
            continue
        others += state != b'Z'
print(others)
"""


def adversarial_config(workers: int = WORKERS, **sandbox: Any) -> ExecutorConfig:
    return ExecutorConfig(
        workers=workers,
        sandbox=SandboxConfig(
            backend="docker",
            image=SANDBOX_IMAGE,
            container_memory_mb=512,
            pids_limit=64,
            **sandbox,
        ),
        limits=LimitsConfig(timeout_s=CPU_LIMIT_S, wall_factor=WALL_FACTOR, memory_mb=256, output_mb=1),
    )


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc}); start dockerd to run these")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> Any:
    try:
        return docker_client.images.get(SANDBOX_IMAGE)
    except docker.errors.ImageNotFound:
        pass
    pytest.fail(
        f"the Docker engine is up but image {SANDBOX_IMAGE} is missing: run deploy/build-images.sh",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def make_executor(docker_client: Any, sandbox_image: Any) -> Callable[..., Executor]:
    """Factory for extra executors (same limits); the caller closes them (use ``with``)."""

    def make(workers: int = WORKERS, **sandbox: Any) -> Executor:
        saved = {key: os.environ.get(key) for key in CANARY_ENV}
        os.environ.update(CANARY_ENV)
        try:
            return Executor(adversarial_config(workers, **sandbox))
        except SandboxFault as exc:  # engine up, image missing or stale: a failure, not a skip
            pytest.fail(f"cannot start the docker sandboxes: {exc}", pytrace=False)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return make


@pytest.fixture(scope="module")
def executor(make_executor: Callable[..., Executor]) -> Iterator[Executor]:
    with make_executor() as ex:
        yield ex


def run_on_every_sandbox(ex: Executor, problem: Problem, program: str) -> list[Any]:
    """Run ``program`` once on each idle sandbox of ``ex``.

    The pool hands sandboxes out first-in first-out and puts them back at the end, so
    ``workers`` sequential runs visit every sandbox once (as long as none is recycled meanwhile).
    """
    return [ex.execute(problem, program) for _ in range(ex.config.workers)]


def check_still_serving(ex: Executor) -> None:
    """The executor still serves correct verdicts, on every sandbox, without retries."""
    # n correct then n wrong programs: with the pool's FIFO order each sandbox gets one of each.
    n = ex.config.workers
    results = [ex.execute(SUM, SUM_OK) for _ in range(n)] + [ex.execute(SUM, SUM_WRONG) for _ in range(n)]
    verdicts = [r.verdict for r in results]
    expected = [Verdict.PASSED] * n + [Verdict.FAILED_TEST] * n
    assert verdicts == expected, f"executor no longer serves correct verdicts: {verdicts} ({results})"
    assert all(r.attempts == 1 for r in results), [r.attempts for r in results]


@pytest.fixture
def still_serving() -> Callable[[Executor], None]:
    return check_still_serving


def sandbox_containers(client: Any, ex: Executor) -> list[Any]:
    """The running containers of ``ex``'s pool (found by the executor's container label)."""
    label = f"{CONTAINER_LABEL}.owner={ex.pool.owner}"
    # sparse: no inspect of each, which would race containers removing themselves
    return client.containers.list(sparse=True, filters={"label": label, "status": "running"})


def idle_container_processes(client: Any, ex: Executor) -> dict[str, list[list[str]]]:
    """``docker top`` (seen from the host) of every sandbox currently idle in ``ex``'s pool."""
    idle_ids = {box.connection.container.id for box in list(ex.pool._idle.queue)}
    found = {}
    for container in sandbox_containers(client, ex):
        if container.id in idle_ids:
            found[container.short_id] = container.top(ps_args="-eo pid,ppid,stat,comm,args")["Processes"]
    assert len(found) == ex.config.workers, f"expected {ex.config.workers} idle sandboxes, found {found}"
    return found


def check_no_leftover_processes(client: Any, ex: Executor) -> None:
    """Only the harness (server, zygote, runner) is left in every sandbox: from the host and from inside."""
    for short_id, processes in idle_container_processes(client, ex).items():
        live = [p for p in processes if not p[2].startswith("Z")]
        assert len(live) == HARNESS_PROCESSES, f"container {short_id} runs {processes}"
        assert all("harness.server" in p[4] for p in live), f"container {short_id} runs {processes}"
    counter = Problem(
        task_id="count-processes",
        statement="",
        hidden_tests=[TestCase(kind="stdio", stdin="", stdout=f"{HARNESS_PROCESSES}\n")],
    )
    results = run_on_every_sandbox(ex, counter, COUNT_PROCESSES)
    assert [r.verdict for r in results] == [Verdict.PASSED] * ex.config.workers, [
        (r.verdict, r.error) for r in results
    ]


@pytest.fixture
def no_leftover_processes(docker_client: Any) -> Callable[[Executor], None]:
    return lambda ex: check_no_leftover_processes(docker_client, ex)


@pytest.fixture
def on_every_sandbox() -> Callable[[Executor, Problem, str], list[Any]]:
    return run_on_every_sandbox


@pytest.fixture(scope="session")
def canary_env() -> dict[str, str]:
    """Secrets set in this process's environment while the sandboxes start (see CANARY_ENV)."""
    return dict(CANARY_ENV)


class ContainerKiller(threading.Thread):
    """Kills, from outside, the container of ``ex``'s pool that is running a program (it has more
    than the harness's processes), up to ``times`` times; ``killed`` lists what it killed."""

    def __init__(self, client: Any, ex: Executor, times: int) -> None:
        super().__init__(daemon=True)
        self.client, self.ex, self.times = client, ex, times
        self.killed: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and len(self.killed) < self.times:
            for container in sandbox_containers(self.client, self.ex):
                try:
                    if len(container.top(ps_args="-eo pid")["Processes"]) > HARNESS_PROCESSES:
                        container.kill()
                        self.killed.append(container.short_id)
                        break
                except docker.errors.APIError:  # it went away between list and top/kill
                    continue
            time.sleep(0.02)

    def __enter__(self) -> ContainerKiller:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.join(5)


@pytest.fixture
def container_killer(docker_client: Any) -> Callable[[Executor, int], ContainerKiller]:
    """``with container_killer(ex, times) as killer:`` kills running sandboxes from outside."""
    return lambda ex, times: ContainerKiller(docker_client, ex, times)
