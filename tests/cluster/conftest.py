"""Ray clusters started with `ray start`, as the README's "On a cluster" does, on this machine: each
node on free ports with its own temp dir, token authentication on with a token of the test's own
(RAY_AUTH_TOKEN: ~/.ray/auth_token is never read or written), stopped by ending only the processes
it started (`ray stop` would stop every Ray cluster on the host)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import pytest

from driver.services import free_port

REPO = Path(__file__).resolve().parents[2]

SHORT_RUN = [
    "phases.sft_steps=30",
    "phases.critic_steps=2",
    "phases.rl_steps=4",
    "problems.suite.train_size=40",
    "problems.suite.held_out_size=6",
    "learner.batch_size=8",
    "learner.wait_s=240",
    "sampler.problems_per_round=2",
    "sampler.sampling.n=4",
    "sampler.sampling.max_new_tokens=48",
    "eval.max_new_tokens=48",
    "checkpoint_every=2",
    "execution.worker.executor.workers=2",
    "execution.worker.executor.limits.timeout_s=2",
]
"""--set overrides that shorten deploy/configs/tiny.toml to about a minute"""

OBJECT_STORE_BYTES = 300 * 1024**2
"""per node: Ray's default (30% of memory) is far more than a tiny run needs on a shared host"""


class RayNode:
    """One `ray start --block` node in its own process group."""

    def __init__(self, temp_dir: Path, env: dict[str, str], args: Sequence[str]) -> None:
        self.temp_dir = temp_dir
        self.log = (temp_dir.parent / f"{temp_dir.name}.log").open("w")
        command = ["ray", "start", "--block", "--temp-dir", str(temp_dir), "--disable-usage-stats", *args]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        """SIGTERM to the `ray start` process group (it shuts its node down), then SIGKILL to whatever
        of this node is left: its group, and any process whose command line names its temp dir."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                continue
        for pid in _processes_naming(str(self.temp_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


class RayCluster:
    """A head node (GCS, dashboard, Jobs API) and any worker nodes, all token-authenticated."""

    def __init__(self) -> None:
        # Ray puts Unix sockets under the temp dir: a short path keeps them under the 107-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
            self.env.pop(name, None)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.nodes: list[RayNode] = []

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, num_cpus: int = 1, resources: dict[str, float] | None = None) -> None:
        args = [
            "--head",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            *_node_ports(num_cpus, resources),
        ]
        self.nodes.append(RayNode(self.root / "head", self.env, args))
        self.wait_for_nodes(1)

    def add_worker(self, num_cpus: int = 1, resources: dict[str, float] | None = None) -> None:
        args = [f"--address=127.0.0.1:{self.gcs_port}", *_node_ports(num_cpus, resources)]
        self.nodes.append(RayNode(self.root / f"worker{len(self.nodes)}", self.env, args))
        self.wait_for_nodes(len(self.nodes))

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                alive = [n for n in self.api("/api/v0/nodes?limit=100")["result"] if n["state"] == "ALIVE"]
                if len(alive) >= count:
                    return
            except (OSError, KeyError, ValueError):
                pass  # the dashboard is not up yet
            if any(node.process.poll() is not None for node in self.nodes) or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray cluster did not come up: see {self.root}/*.log")
            time.sleep(1)

    def api(self, path: str, token: str | None = "") -> Any:
        """GET a dashboard API path with the cluster's token (``token=None``: no header at all);
        the payload of a state API answer, the whole JSON otherwise."""
        request = urllib.request.Request(self.dashboard + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        return body["data"]["result"] if isinstance(body, dict) and "data" in body else body

    def status_of(self, path: str, token: str | None) -> int:
        try:
            self.api(path, token)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def ray(
        self, *args: str, env: dict[str, str | None] | None = None, timeout_s: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """A `ray` command as a client of this cluster types it (RAY_AUTH_MODE=token and the token),
        with ``env`` changed (None: unset)."""
        environment = dict(self.env)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        return subprocess.run(
            ["ray", *args], env=environment, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )

    def actors(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v0/actors?limit=1000&detail=true")["result"])

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _node_ports(num_cpus: int, resources: dict[str, float] | None) -> list[str]:
    # Every port a node opens is chosen here: Ray's fixed defaults would collide with other clusters.
    args = [
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    if resources:
        args.append(f"--resources={json.dumps(resources)}")
    return args


@pytest.fixture
def ray_cluster() -> Iterator[RayCluster]:
    if shutil.which("ray") is None or shutil.which("redis-server") is None:
        pytest.fail("the ray CLI and redis-server must be on PATH")
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def submit(cluster: RayCluster, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """The README's job submission, shortened by ``SHORT_RUN`` and ``overrides``."""
    sets = [*SHORT_RUN, *overrides]
    return cluster.ray(
        "job", "submit", f"--address={cluster.dashboard}", "--working-dir", ".", "--",
        "python", "-m", "driver", "--config", "deploy/configs/tiny.toml", "--run-dir", str(run_dir),
        "--set", *sets,
    )  # fmt: skip


def run_id(run_dir: Path) -> str:
    return str(json.loads((run_dir / "run.json").read_text())["run_id"])
