"""The single-process learner and the Ray actor learner give the same update on the same batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch

from actors.config import SamplingConfig
from coderl.outcomes import OutcomeClass, Verdict
from coderl.rollouts import TrainStreams
from coderl.streams import StreamNames
from driver.roles import learner_arguments
from driver.services import RunRedis
from driver.splits import load_splits
from learner.batch import ScoredSample, TrainBatch
from learner.learner import Learner

from .conftest import small_config

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.ray]

OUTCOMES = [
    (Verdict.PASSED, OutcomeClass.PASSED, 1.0),
    (Verdict.FAILED_TEST, OutcomeClass.FAILED_TEST, -0.3),
    (Verdict.RUNTIME_ERROR, OutcomeClass.RUNTIME_ERROR, -0.6),
]


@pytest.fixture
def run_redis(tmp_path: Path) -> Iterator[RunRedis]:
    server = RunRedis(tmp_path / "redis")
    yield server
    server.stop()


def _batch(learner: Learner, problems: list, n: int) -> TrainBatch:
    """n samples per problem from the learner's own policy, with fixed made-up outcomes."""
    params = SamplingConfig(n=n, temperature=1.0, max_new_tokens=24, seed=3)
    samples = learner.policy.sample(problems, params, round_id="eq")
    scored = [ScoredSample(s, *OUTCOMES[i % 3], baseline_reward=-0.3) for i, s in enumerate(samples)]
    return TrainBatch(sampled=scored)


def test_in_process_and_ray_learners_make_the_same_update(tmp_path: Path, run_redis: RunRedis) -> None:
    (tmp_path / "run").mkdir()
    config = small_config(tmp_path / "run", "critic.mode=online")
    splits = load_splits(config.problems)
    channel = TrainStreams(StreamNames(), run_id="eq")
    arguments = learner_arguments(config, splits, run_redis.url, channel, None)
    local = Learner(**arguments)
    batch = _batch(local, splits.rl[:2], n=4)
    before = local.weights().tensors()  # views: that packed copy is never overwritten while held

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=0)(Learner).remote(**arguments)
        # Copied out of the object store's shared memory, which goes away with ray.shutdown().
        remote_before = {k: v.clone() for k, v in ray.get(remote.weights.remote()).tensors().items()}
        report_ray = ray.get(remote.train_on.remote(batch))
        remote_after = {k: v.clone() for k, v in ray.get(remote.weights.remote()).tensors().items()}
    finally:
        ray.shutdown()
    report_local = local.train_on(batch)
    after = local.weights().tensors()

    assert report_local.status.policy_version == report_ray.status.policy_version == local.policy.version
    assert report_local.stats.keys() == report_ray.stats.keys()
    for key, value in report_local.stats.items():
        if key == "learner/peak_memory_gib":
            continue  # a property of each process, not of the update
        assert report_ray.stats[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    changed = 0
    for name, tensor in after.items():
        torch.testing.assert_close(remote_before[name], before[name], rtol=0, atol=0)  # same start
        torch.testing.assert_close(remote_after[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
        changed += not torch.equal(tensor, before[name])
    assert changed > len(after) // 2  # the update really moved the weights
