"""``sync.method = "collective"`` for the Ray roles: the learner's rank 0 broadcasts its weights to
every sampler over a process group of their own (models/weight_group.py), not through the object
store.

The group is built at the first broadcast: the learner opens a store on a free port of its node,
then the learner and every sampler join at once (a sampler in its ``sync`` concurrency group, so a
round in progress does not hold it up). Each broadcast is one ``send_weights`` on the learner and
one ``receive_weights`` per sampler, waited for together: when it returns, every sampler holds the
weights in staging and applies them as its next round starts.

Failures fall back, they do not stop the run: a broadcast that fails or times out leaves the group
everywhere and reports failure, and the caller sends that broadcast through the object store; a
sampler restarted by Ray is in no group, so recovery also leaves it (``reset``); either way the next
broadcast builds a new group with every sampler.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import ray

from actors.config import SyncConfig
from models.weight_group import Backend

from .train_config import TrainConfig

__all__ = ["SYNC_GROUP", "CollectiveBroadcast", "backend_of", "node_ip"]

log = logging.getLogger(__name__)

SYNC_GROUP = "sync"
"""the sampler actors' concurrency group for the weight-sync calls (one thread beside the rounds)"""


def backend_of(config: TrainConfig) -> Backend:
    """sync.backend, with auto resolved: NCCL only when the learner and the samplers all have GPUs."""
    if config.sync.backend != "auto":
        return config.sync.backend
    on_gpus = config.learner.num_gpus > 0 and config.sampler.num_gpus > 0
    return "nccl" if on_gpus else "gloo"


class CollectiveBroadcast:
    def __init__(self, learner: Any, samplers: Sequence[Any], config: SyncConfig, backend: Backend) -> None:
        self.learner, self.samplers = learner, list(samplers)
        self.config, self.backend = config, backend
        self.joined = False

    def broadcast(self) -> bool:
        """Send the learner's weights to every sampler; False when that failed (the group has been
        left everywhere: send this broadcast another way)."""
        try:
            if not self.joined:
                self._build()
            receives = [self._sync_call(s, "receive_weights") for s in self.samplers]
            ray.get([self.learner.send_weights.remote(), *receives], timeout=self.config.timeout_s)
            return True
        except ray.exceptions.RayError as exc:
            log.warning(
                "collective weight broadcast failed (%s: %s); this one goes through the object store "
                "and the group is rebuilt at the next",
                type(exc).__name__,
                exc,
            )
            self.reset()
            return False

    def reset(self) -> None:
        """Leave the group everywhere; the next broadcast builds a new one. Not waited for: each
        actor runs these calls before any later join (Ray keeps one caller's calls in order)."""
        self.joined = False
        self.learner.close_sync_group.remote()
        for sampler in self.samplers:
            self._sync_call(sampler, "leave_sync_group")

    def _build(self) -> None:
        host = ray.get(self.learner.__ray_call__.remote(node_ip), timeout=self.config.timeout_s)
        world_size = 1 + len(self.samplers)
        address = ray.get(
            self.learner.open_sync_group.remote(host, world_size, self.backend, self.config),
            timeout=self.config.timeout_s,
        )
        joins = [
            self._sync_call(sampler, "join_sync_group", address, rank)
            for rank, sampler in enumerate(self.samplers, start=1)
        ]
        ray.get([self.learner.join_sync_group.remote(), *joins], timeout=self.config.timeout_s)
        self.joined = True
        log.info("weight-sync group of %d ranks (%s) at %s:%d", world_size, self.backend, host, address.port)

    @staticmethod
    def _sync_call(sampler: Any, method: str, *args: Any) -> Any:
        return getattr(sampler, method).options(concurrency_group=SYNC_GROUP).remote(*args)


def node_ip(_actor: object) -> str:
    """Run inside an actor (``actor.__ray_call__.remote(node_ip)``): its node's address."""
    return str(ray.util.get_node_ip_address())
