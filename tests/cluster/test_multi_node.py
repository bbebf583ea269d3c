"""A run across two Ray nodes, its roles placed through the config's resource requests: custom
resources stand in for GPU nodes (`ray start --resources`), the learner asks for the head's and the
samplers for the worker node's, so every weight broadcast crosses from one node to the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coderl.config import load_config
from driver.ray_roles import ClusterTooSmall, check_resources
from driver.train_config import TrainConfig
from learner.checkpoint import latest_checkpoint

from .conftest import RayCluster, run_id, submit

PLACEMENT = ["sampler.num_samplers=2", "learner.resources.learner_node=1", "sampler.resources.sampler_node=1"]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.redis
@pytest.mark.docker
def test_roles_on_the_nodes_their_resources_name(ray_cluster: RayCluster, tmp_path: Path) -> None:
    ray_cluster.start_head(num_cpus=1, resources={"learner_node": 1})
    ray_cluster.add_worker(num_cpus=1, resources={"sampler_node": 2})
    run_dir = tmp_path / "run"

    submitted = submit(ray_cluster, run_dir, *PLACEMENT)
    assert submitted.returncode == 0, submitted.stdout[-4000:] + submitted.stderr[-4000:]

    nodes = {n["node_id"]: n for n in ray_cluster.api("/api/v0/nodes?limit=100&detail=true")["result"]}
    (learner_node,) = [i for i, n in nodes.items() if "learner_node" in n["resources_total"]]
    (sampler_node,) = [i for i, n in nodes.items() if "sampler_node" in n["resources_total"]]
    assert learner_node != sampler_node
    run = run_id(run_dir)
    placed = {a["name"]: a["node_id"] for a in ray_cluster.actors() if a["name"].startswith(f"coderl-{run}-")}
    assert placed[f"coderl-{run}-learner"] == learner_node
    assert placed[f"coderl-{run}-sampler-0"] == placed[f"coderl-{run}-sampler-1"] == sampler_node

    # The samplers sampled with weights the learner sent them from the other node.
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["policy_version"] > 0
    for sampler in state["samplers"]:
        assert max(sampler["versions_received"]) == state["policy_version"]


def test_resource_requests_the_cluster_lacks_are_refused() -> None:
    config = load_config(TrainConfig, None, PLACEMENT)
    check_resources(config, {"learner_node": 1, "sampler_node": 2, "CPU": 2})
    with pytest.raises(ClusterTooSmall, match=r"2 of resource 'sampler_node' .* cluster has 1: start nodes"):
        check_resources(config, {"learner_node": 1, "sampler_node": 1})
    with pytest.raises(ClusterTooSmall, match=r"resource 'learner_node'"):
        check_resources(config, {"sampler_node": 2})
