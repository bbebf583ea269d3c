"""``coderl evaluate --workers N`` on a real local Ray instance: the same programs and verdicts as
one in-process worker, resume across worker counts, and a killed worker as a one-line error."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import ray

from coderl.cli import CommandError, main
from driver.evaluate_ray import check_cluster
from driver.evaluation import WorkersConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.docker]

APPS = Path(__file__).resolve().parents[1] / "fixtures" / "apps" / "train"
BASE = ["evaluate", "--model", "tiny", "--problems", str(APPS), "--max-new-tokens", "24", "--device", "cpu"]
BASE += ["--n", "3", "--k", "1", "3"]
COMPARED = ("task_id", "sample_id", "origin", "round", "program", "example_verdict", "verdict", "passed")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance of these tests only (its own temp dir); ``ray.shutdown`` stops it."""
    try:
        docker.from_env(timeout=30).ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("RAY_ADDRESS is set: these tests start their own local Ray instance")
    # A short temp dir: Ray's socket paths under it must stay within the OS's 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray-ev-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, _temp_dir=temp_dir)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _compared(out: Path) -> list[tuple[Any, ...]]:
    return [tuple(r[key] for key in COMPARED) for r in _lines(out / "results.jsonl")]


def test_two_workers_judge_what_one_does_and_resume(tmp_path: Path, local_ray: None) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*BASE, "--out", str(one)]) == 0  # in this process (Ray is up but not asked for)
    assert main([*BASE, "--out", str(two), "--workers", "2", "--max-problems", "2"]) == 0
    with (two / "results.jsonl").open("a") as file:  # a run killed while writing a third problem
        file.write('{"task_id": "0002", "sample_id": "0002/v0/s0/sam')
    assert main([*BASE, "--out", str(two), "--workers", "2", "--resume"]) == 0

    expected = _compared(one)
    assert len(expected) == 12 and len({r[1] for r in expected}) == 12
    # Same samples, programs and verdicts, and (rewritten at the end) in the same problem order.
    assert _compared(two) == expected
    assert _lines(two / "samples.jsonl") == _lines(one / "samples.jsonl")
    summary_one = json.loads((one / "summary.json").read_text())
    summary_two = json.loads((two / "summary.json").read_text())
    assert summary_two["pass@k"] == summary_one["pass@k"] and summary_two["n@k"] == summary_one["n@k"]
    assert not [a for a in ray.util.list_named_actors() if a.startswith("coderl-evaluate-")]


def test_a_killed_worker_is_a_one_line_error_and_resume_finishes(
    tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Worker 1 is killed once the first problem is written, with problems still to hand out:
    the command ends with one line, the problems finished are kept whole, --resume does the rest."""
    out = tmp_path / "killed"
    name = f"coderl-evaluate-{os.getpid()}-worker-1"
    killed = threading.Event()

    def kill_worker_1() -> None:
        deadline = time.monotonic() + 120
        results = out / "results.jsonl"
        while time.monotonic() < deadline and not killed.is_set():
            if results.is_file() and results.stat().st_size > 0:
                ray.kill(ray.get_actor(name), no_restart=True)
                killed.set()
            time.sleep(0.02)

    killer = threading.Thread(target=kill_worker_1, daemon=True)
    killer.start()
    assert main([*BASE, "--out", str(out), "--workers", "2"]) == 3
    killer.join(timeout=10)
    assert killed.is_set()
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("coderl evaluate: error: evaluation worker 1 died on problem 000")
    assert "--resume" in error
    counts: dict[str, int] = {}
    for record in _lines(out / "results.jsonl"):
        counts[record["task_id"]] = counts.get(record["task_id"], 0) + 1
    assert 1 <= len(counts) < 4 and all(count == 3 for count in counts.values())  # whole problems
    assert not [a for a in ray.util.list_named_actors() if a.startswith("coderl-evaluate-")]

    assert main([*BASE, "--out", str(out), "--workers", "2", "--resume"]) == 0
    results = _lines(out / "results.jsonl")
    assert [r["task_id"] for r in results] == [t for t in ("0000", "0001", "0002", "0003") for _ in range(3)]


def test_requests_the_cluster_cannot_meet_are_refused_before_any_actor_starts() -> None:
    cluster = {"CPU": 2.0, "GPU": 1.0, "eval_node": 2.0}
    check_cluster(WorkersConfig(count=2, num_gpus=0.5, resources={"eval_node": 1}), cluster)
    with pytest.raises(CommandError, match=r"workers.num_gpus ask for 2 GPU but the Ray cluster has 1"):
        check_cluster(WorkersConfig(count=2, num_gpus=1), cluster)
    with pytest.raises(CommandError, match=r"resources\['eval_node'\] ask for 3 eval_node .* has 2"):
        check_cluster(WorkersConfig(count=3, resources={"eval_node": 1}), cluster)
