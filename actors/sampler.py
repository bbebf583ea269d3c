"""The sampler: takes training problems in a seeded order, samples programs with the current policy,
publishes them for execution, and swaps in broadcast weights between rounds.

A plain class; ``driver/ray_roles.py`` wraps it with ``ray.remote`` where actors are created, and
the in-process pipeline calls it directly. Ray runs an actor's calls one at a time, so a weight
update sent while a round runs is applied when the round ends: weights never change mid-round.
With ``sync.method='collective'`` the weight-sync calls (``join_sync_group``, ``receive_weights``,
``leave_sync_group``) run in a concurrency group of their own, beside a running round: received
weights wait in a staging copy and are applied when the next round starts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from coderl.problem import Problem
from coderl.redis_client import DEFAULT_OUTAGE_S, open_client
from coderl.rollouts import TrainStreams, publish_rollouts
from coderl.wire import WireMessage
from models.weight_group import GroupAddress, WeightInbox
from models.weight_sync import PackedWeights

from .config import PolicyConfig, SamplerConfig, SamplingConfig
from .policy import Policy

__all__ = ["RoundReport", "Sampler", "SamplerState", "shard"]

log = logging.getLogger(__name__)


class SamplerState(BaseModel):
    """Where a sampler is in its data, for checkpoints."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = 0
    cursor: int = 0
    rounds: int = 0
    incarnation: int = 0
    """bumped on every restore, so sample ids stay unique across restarts"""
    versions_received: list[int] = Field(default_factory=list)
    """every broadcast policy version applied, in order (collective sync applies only the newest
    version received before a round starts)"""


class RoundReport(WireMessage):
    """What one sampling round produced (returned through Ray to the driver)."""

    sampler_id: int
    round_index: int
    policy_version: int
    problems: int
    samples: int
    """programs published, greedy decodes included"""
    tokens: int
    generate_s: float
    publish_s: float
    weights_s: float
    """time spent applying broadcast weights since the previous round"""
    state: SamplerState
    """the sampler's position after this round (to restore a restarted sampler)"""


class Sampler:
    def __init__(
        self,
        sampler_id: int,
        config: SamplerConfig,
        policy_config: PolicyConfig,
        problems: Sequence[Problem],
        redis_url: str,
        channel: TrainStreams,
        greedy_baseline: bool,
        seed: int = 0,
        redis_outage_s: float = DEFAULT_OUTAGE_S,
    ) -> None:
        if not problems:
            raise ValueError(f"sampler {sampler_id} has no problems to sample")
        self.sampler_id = sampler_id
        self.config = config
        self.problems = list(problems)
        self.channel = channel
        self.greedy_baseline = greedy_baseline
        self.seed = seed
        self.state = SamplerState()
        self.policy = Policy.load(policy_config)
        # Retries through outages up to redis_outage_s; a publication sent twice is harmless
        # (coderl/redis_client.py says why).
        self.redis = open_client(redis_url, redis_outage_s)
        self._order = self._epoch_order(0)
        self._weights_s = 0.0
        self._inbox: WeightInbox | None = None
        """collective weight sync: the staging copy, made when the sampler first joins a group"""

    # -- weights -----------------------------------------------------------------------------------

    def set_weights(self, weights: PackedWeights) -> int:
        """Adopt broadcast weights (and their version) now; returns the version now in use."""
        started = time.monotonic()
        self.policy.load_packed(weights)
        self._weights_s += time.monotonic() - started
        self.state.versions_received.append(weights.version)
        return self.policy.version

    def join_sync_group(self, address: GroupAddress, rank: int) -> None:
        """Join the learner's weight-sync group (blocks until every member has joined)."""
        if self._inbox is None:
            self._inbox = WeightInbox(self.policy.model)
        self._inbox.join(address, rank)

    def receive_weights(self) -> int:
        """Receive one collective broadcast into staging (applied when the next round starts)."""
        if self._inbox is None:
            raise RuntimeError(f"sampler {self.sampler_id} is in no weight-sync group")
        return self._inbox.receive()

    def leave_sync_group(self) -> None:
        if self._inbox is not None:
            self._inbox.leave()

    def _apply_staged(self) -> None:
        if self._inbox is None:
            return
        started = time.monotonic()
        version = self._inbox.apply(self.policy.version)
        if version is not None:
            self.policy.version = version
            self._weights_s += time.monotonic() - started
            self.state.versions_received.append(version)

    @property
    def policy_version(self) -> int:
        return self.policy.version

    # -- sampling ------------------------------------------------------------------------------------

    def generate_round(self) -> RoundReport:
        """Sample the next problems, publish the programs for execution, return what was done."""
        self._apply_staged()
        problems = self._next_problems()
        started = time.monotonic()
        round_id = f"s{self.sampler_id}i{self.state.incarnation}r{self.state.rounds}"
        params = self._params(self.config.sampling)
        samples = self.policy.sample(problems, params, round_id=round_id)
        if self.greedy_baseline:
            greedy = params.model_copy(update={"n": 1, "temperature": 0.0})
            samples += self.policy.sample(problems, greedy, round_id=round_id)
        generated = time.monotonic()
        publish_rollouts(self.redis, self.channel, samples, self.config.rollout_ttl_s)
        report = RoundReport(
            sampler_id=self.sampler_id,
            round_index=self.state.rounds,
            policy_version=self.policy.version,
            problems=len(problems),
            samples=len(samples),
            tokens=sum(len(s.token_ids) for s in samples),
            generate_s=generated - started,
            publish_s=time.monotonic() - generated,
            weights_s=self._weights_s,
            state=self.state.model_copy(update={"rounds": self.state.rounds + 1}, deep=True),
        )
        self.state.rounds += 1
        self._weights_s = 0.0
        return report

    def _params(self, sampling: SamplingConfig) -> SamplingConfig:
        """A distinct, reproducible seed per sampler, incarnation and round, derived from the run's
        seed and ``sampling.seed``; with ``sampling.seed`` None sampling is not seeded at all."""
        if sampling.seed is None:
            return sampling
        key = f"{self.seed}/{sampling.seed}/{self.sampler_id}/{self.state.incarnation}/{self.state.rounds}"
        return sampling.model_copy(update={"seed": random.Random(key).getrandbits(31)})

    def _next_problems(self) -> list[Problem]:
        chosen: list[Problem] = []
        while len(chosen) < min(self.config.problems_per_round, len(self.problems)):
            if self.state.cursor >= len(self._order):
                self.state.epoch += 1
                self.state.cursor = 0
                self._order = self._epoch_order(self.state.epoch)
            chosen.append(self.problems[self._order[self.state.cursor]])
            self.state.cursor += 1
        return chosen

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(f"{self.seed}/{self.sampler_id}/{epoch}").shuffle(order)
        return order

    # -- checkpoint --------------------------------------------------------------------------------

    def get_state(self) -> SamplerState:
        return self.state.model_copy(deep=True)

    def restore(self, state: SamplerState) -> None:
        """Continue from a checkpointed position, under a new incarnation."""
        self.state = state.model_copy(update={"incarnation": state.incarnation + 1}, deep=True)
        self._order = self._epoch_order(self.state.epoch)

    def queue_depth(self) -> int:
        return int(self.redis.xlen(self.channel.names.requests))


def shard(problems: Sequence[Problem], sampler_id: int, num_samplers: int) -> list[Problem]:
    """Sampler ``sampler_id``'s share of the training problems (round-robin)."""
    return [p for i, p in enumerate(problems) if i % num_samplers == sampler_id]
