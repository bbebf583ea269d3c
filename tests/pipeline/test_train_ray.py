"""The training run on a real local Ray instance: decoupled roles, broadcasts, faults, equivalence."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from learner.checkpoint import latest_checkpoint
from learner.train import train

from .conftest import audit_records, small_config

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker, pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_decoupled_run_on_ray(tmp_path: Path, local_ray: None) -> None:
    run_dir = tmp_path / "run"
    config = small_config(run_dir, "sampler.num_samplers=2")
    result = train(config)
    assert result.state.phase == "done"
    assert result.state.policy_version == 30 + 4

    records = audit_records(run_dir)
    assert len(records) == 2 + 4
    trained = [s for record in records for s in record["trained"]]
    assert len(trained) == len(set(trained))
    samplers = {re.search(r"/v\d+s(\d+)i\d+r\d+/", s).group(1) for s in trained}  # type: ignore[union-attr]
    assert samplers == {"0", "1"}  # both samplers fed the learner

    # Each sampler applied every broadcast, in order: the phase-start broadcasts and one per update.
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    for sampler in state["samplers"]:
        received = sampler["versions_received"]
        assert received == sorted(received)
        assert {31, 32, 33, 34} <= set(received)
        assert received[-1] == 34
