"""A short training run on a real local Ray instance with ``sync.method = "collective"``: the
learner broadcasts its weights to both samplers over their gloo group after every update."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from driver.train import train
from learner.checkpoint import latest_checkpoint

from .conftest import audit_records, small_config

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    yield
    ray.shutdown()


def test_a_run_with_collective_weight_sync_completes(
    tmp_path: Path, local_ray: None, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    config = small_config(run_dir, "sampler.num_samplers=2", "sync.method=collective", "sync.bucket_mb=0.25")
    with caplog.at_level(logging.INFO, logger="driver.collective"):
        result = train(config)
    assert result.state.phase == "done"
    assert result.state.policy_version == 30 + 4
    assert "weight-sync group of 3 ranks (gloo)" in caplog.text
    assert "failed" not in caplog.text  # no broadcast fell back to the object store

    trained = [s for record in audit_records(run_dir) for s in record["trained"]]
    assert len(trained) == len(set(trained))
    # Each sampler applied broadcast versions in order, updated ones included. Staged weights are
    # applied as a round starts, so a version superseded before then (or the last one, when no
    # round follows it) is never applied.
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    for sampler in state["samplers"]:
        received = sampler["versions_received"]
        assert received == sorted(received) and received[0] == 30 and received[-1] > 30
