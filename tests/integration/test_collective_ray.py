"""driver/collective.py on a local Ray cluster, with small stand-ins for the learner and the samplers
(the same weight-sync methods over the real models/weight_group.py): the group is built at the
first broadcast, delivers the weights, and after a sampler dies the broadcast fails over to the
caller and the next one rebuilds the group with the restarted sampler."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from actors.config import SyncConfig
from driver.collective import SYNC_GROUP, CollectiveBroadcast
from models.weight_group import Backend, GroupAddress, SyncHost, WeightInbox

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16), nn.Linear(16, 50))


class LearnerStandIn:
    """learner.learner.Learner's weight-sync methods, around a small model."""

    def __init__(self) -> None:
        self.model, self.version = _model(1), 0
        self.sync: SyncHost | None = None

    def open_sync_group(
        self, host: str, world_size: int, backend: Backend, config: SyncConfig
    ) -> GroupAddress:
        self.close_sync_group()
        self.sync = SyncHost(host, world_size, backend, int(config.bucket_mb * 2**20), config.timeout_s)
        return self.sync.address

    def join_sync_group(self) -> None:
        assert self.sync is not None
        self.sync.join(self.model)

    def send_weights(self) -> int:
        assert self.sync is not None
        self.version += 1
        with torch.no_grad():
            self.model[1].bias.fill_(float(self.version))
        self.sync.send(self.version)
        return self.version

    def close_sync_group(self) -> None:
        if self.sync is not None:
            self.sync.close()
        self.sync = None


class SamplerStandIn:
    """actors.sampler.Sampler's weight-sync methods; ``apply`` stands for the start of a round."""

    def __init__(self) -> None:
        self.model, self.version = _model(2), 0
        self.inbox = WeightInbox(self.model)

    def join_sync_group(self, address: GroupAddress, rank: int) -> None:
        self.inbox.join(address, rank)

    def receive_weights(self) -> int:
        return self.inbox.receive()

    def leave_sync_group(self) -> None:
        self.inbox.leave()

    def apply(self) -> tuple[int, float]:
        self.version = self.inbox.apply(self.version) or self.version
        return self.version, float(self.model[1].bias[0].detach())


def _pid(actor: Any) -> int:
    import ray

    return int(ray.get(actor.__ray_call__.remote(lambda _: os.getpid())))


def _wait_until_restarted(actor: Any, old_pid: int, timeout_s: float = 60) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _pid(actor) != old_pid:
                return
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.ActorDiedError):
            pass  # going away or coming back
        assert time.monotonic() < deadline, "the sampler was not restarted"
        time.sleep(0.2)


def _wait_until_back(actor: Any, timeout_s: float = 60) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.apply.remote())
            return
        except ray.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline, "the sampler did not come back"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # The stand-ins live in this test module, which Ray's workers cannot import: send them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_the_group_delivers_and_is_rebuilt_after_a_sampler_restarts(ray_cluster: None) -> None:
    import ray

    learner = ray.remote(num_cpus=0)(LearnerStandIn).remote()
    sampler_cls = ray.remote(num_cpus=0, max_restarts=1, concurrency_groups={SYNC_GROUP: 1})(SamplerStandIn)
    samplers = [sampler_cls.remote() for _ in range(2)]
    sync = CollectiveBroadcast(learner, samplers, SyncConfig(bucket_mb=0.001, timeout_s=30), "gloo")

    assert sync.broadcast() and sync.joined
    assert ray.get([s.apply.remote() for s in samplers]) == [(1, 1.0), (1, 1.0)]

    before = _pid(samplers[1])
    ray.kill(samplers[1], no_restart=False)  # Ray restarts it, outside the group
    _wait_until_restarted(samplers[1], before)  # ray.kill returns before the actor is gone
    assert not sync.broadcast() and not sync.joined  # the caller sends this one another way
    _wait_until_back(samplers[1])  # as RayRoles.recover_sampler does
    assert sync.broadcast() and sync.joined  # rebuilt, the restarted sampler included
    sent = ray.get(learner.__ray_call__.remote(lambda actor: actor.version))
    assert ray.get([s.apply.remote() for s in samplers]) == [(sent, float(sent))] * 2
    for actor in [learner, *samplers]:
        ray.kill(actor)
