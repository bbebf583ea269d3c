"""driver/role_metrics.py on a real local Ray cluster: a short training run, and Ray's Prometheus
export (the node's metrics agent, on a known port) serves metrics that the learner, the samplers
and the executor actors set in their own processes, tagged with their role and the run's id."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from coderl.config import load_config
from driver.role_metrics import METRICS, prometheus_names
from driver.services import free_port
from driver.train import TrainResult, train
from driver.train_config import TrainConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.redis, pytest.mark.docker]

RUN = [
    "phases.sft_steps=4",
    "phases.critic_steps=2",
    "phases.rl_steps=12",
    "problems.suite.train_size=40",
    "problems.suite.held_out_size=4",
    "learner.batch_size=8",
    "learner.wait_s=240",
    "sampler.num_samplers=2",
    "sampler.problems_per_round=2",
    "sampler.sampling.n=4",
    "sampler.sampling.max_new_tokens=48",
    "eval.max_new_tokens=48",
    "checkpoint_every=100",
    "execution.worker.executor.workers=2",
    "execution.worker.executor.limits.timeout_s=2",
]
SCRAPE_GRACE_S = 60.0
"""after the run ends, how long to go on scraping (Ray exports about every 10 s)"""

_SERIES = re.compile(r"^(ray_coderl_\w+)\{(.*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def metrics_port() -> Iterator[int]:
    """A local Ray cluster of this test only (its own temp dir), exporting metrics on a known port;
    ``ray.shutdown`` stops exactly this cluster."""
    ray = pytest.importorskip("ray")
    docker = pytest.importorskip("docker")
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (deploy/setup-host.sh installs it)")
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    port = free_port()
    # A short temp dir: Ray's socket paths under it must stay within the OS's 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray-rm-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        _metrics_export_port=port,
        _temp_dir=temp_dir,
    )
    try:
        yield port
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The CodeRL series Ray's metrics agent serves now: (name, labels, value)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return []  # the agent is not up yet
    series = []
    for line in text.splitlines():
        match = _SERIES.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2)))
            series.append((match.group(1), labels, float(match.group(3))))
    return series


def test_every_role_exports_tagged_metrics_through_ray(metrics_port: int, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = load_config(TrainConfig, None, [f"run_dir={run_dir}", *RUN])
    outcome: dict[str, TrainResult | BaseException] = {}

    def run() -> None:
        try:
            outcome["result"] = train(config)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which reports it
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    served = {prom: spec for spec in METRICS.values() for prom in prometheus_names(spec)}
    seen: dict[tuple[str, str, str, str], float] = {}
    """(role, index, Ray name, the metric's own tags) of this run -> the latest value scraped"""
    run_id = None
    ended_at = None
    while True:
        if run_id is None and (run_dir / "run.json").is_file():
            run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
        for name, labels, value in _scrape(metrics_port) if run_id else []:
            if labels.get("run_id") == run_id:
                assert name in served, f"{name}: not a metric driver/role_metrics.py defines"
                assert name.split("_")[2] == labels["role"]  # ray_coderl_<role>_...
                own = ",".join(f"{tag}={labels[tag]}" for tag in served[name].tags)
                seen[(labels["role"], labels["index"], name, own)] = value
        roles = {role for role, *_ in seen}
        if roles == {"learner", "sampler", "executor"} and not worker.is_alive():
            break
        if not worker.is_alive():
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > SCRAPE_GRACE_S:
                break
        time.sleep(2)
    worker.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert isinstance(result, TrainResult) and result.state.phase == "done"

    indexes = {
        role: {key[1] for key in seen if key[0] == role} for role in ("learner", "sampler", "executor")
    }
    assert indexes == {"learner": {"0"}, "sampler": {"0", "1"}, "executor": {"0"}}, sorted(seen)
    # The values are the run's: the learner's version went past the warm start into RL (the last
    # export before the actors stop may miss the last update), each sampler published programs,
    # and the executor scored programs.
    sft_steps = config.phases.sft_steps
    assert (
        sft_steps
        < seen[("learner", "0", "ray_coderl_learner_policy_version", "")]
        <= result.state.policy_version
    )
    for sampler in ("0", "1"):
        assert seen[("sampler", sampler, "ray_coderl_sampler_samples_total", "")] > 0
        assert 0 <= seen[("sampler", sampler, "ray_coderl_sampler_idle_fraction", "")] <= 1
    scored = [v for key, v in seen.items() if key[2] == "ray_coderl_executor_programs_total"]
    assert sum(scored) > 0
