"""The roles of a run (samplers, learner, executors) behind one interface, so the same training loop
drives them in this process or as Ray actors (driver/ray_roles.py).

Calls return handles; ``wait`` returns those finished. In-process calls run eagerly, which is why the
in-process run is always synchronous (generate -> execute -> learn in turn).
"""

from __future__ import annotations

import abc
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.sampler import Sampler, SamplerState, shard
from coderl.rollouts import TrainStreams
from executor.service_config import WorkerConfig
from learner.learner import Learner

from .services import ExecutorThread
from .splits import ProblemSplits
from .train_config import TrainConfig

__all__ = ["Handle", "LocalRoles", "Roles", "executor_worker_config", "make_samplers"]


@dataclass(eq=False)
class Handle:
    kind: str
    """'round' or 'learner'"""
    sampler: int | None = None
    payload: Any = None
    """Ray: the ObjectRef; in-process: the finished value or exception"""
    error: BaseException | None = None
    serial: int = field(default_factory=itertools.count().__next__)


class Roles(abc.ABC):
    num_samplers: int

    @abc.abstractmethod
    def submit_round(self, sampler: int) -> Handle: ...

    @abc.abstractmethod
    def submit_learner(self, method: str, *args: Any) -> Handle: ...

    @abc.abstractmethod
    def wait(self, handles: Sequence[Handle], timeout_s: float | None) -> list[Handle]: ...

    @abc.abstractmethod
    def get(self, handle: Handle) -> Any: ...

    def call_learner(self, method: str, *args: Any) -> Any:
        return self.get(self.submit_learner(method, *args))

    @abc.abstractmethod
    def broadcast(self) -> tuple[int, float]:
        """Send the learner's weights to every sampler; (version, seconds until all have them)."""

    @abc.abstractmethod
    def sampler_states(self) -> list[SamplerState]: ...

    @abc.abstractmethod
    def restore_samplers(self, states: Sequence[SamplerState]) -> None: ...

    @abc.abstractmethod
    def recover_sampler(self, sampler: int, state: SamplerState) -> None:
        """After a sampler failed: the current weights, and its last known position (new incarnation)."""

    @abc.abstractmethod
    def shutdown(self) -> None: ...


def make_samplers(
    config: TrainConfig, splits: ProblemSplits, redis_url: str, channel: TrainStreams
) -> list[tuple[int, dict[str, Any]]]:
    """Constructor arguments of each sampler (the same for both kinds of roles)."""
    count = config.sampler.num_samplers
    out = []
    for i in range(count):
        kwargs = {
            "sampler_id": i,
            "config": config.sampler,
            "policy_config": config.policy,
            "problems": shard(splits.rl, i, count),
            "redis_url": redis_url,
            "channel": channel,
            "greedy_baseline": config.greedy_baseline,
            "seed": config.seed,
        }
        out.append((i, kwargs))
    return out


def executor_worker_config(
    config: TrainConfig, redis_url: str, channel: TrainStreams, index: int
) -> WorkerConfig:
    """The configuration of the ``index``-th executor worker the run starts itself."""
    return WorkerConfig(
        redis_url=redis_url,
        prefix=config.execution.prefix,
        worker_id=f"{channel.run_id}-executor-{index}",
        claim_idle_ms=config.execution.claim_idle_ms,
        executor=config.execution.executor,
    )


class LocalRoles(Roles):
    """Every role in this process; executor workers run in threads when the run starts them."""

    def __init__(
        self,
        config: TrainConfig,
        splits: ProblemSplits,
        redis_url: str,
        channel: TrainStreams,
        learner: Learner,
    ) -> None:
        self.learner = learner
        self.samplers = [Sampler(**kwargs) for _, kwargs in make_samplers(config, splits, redis_url, channel)]
        self.num_samplers = len(self.samplers)
        self.executors = []
        if not config.execution.external_workers:
            for i in range(config.execution.executor_actors):
                self.executors.append(ExecutorThread(executor_worker_config(config, redis_url, channel, i)))

    def _run(self, handle: Handle, fn: Any, *args: Any) -> Handle:
        try:
            handle.payload = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the loop through get(), like a Ray error
            handle.error = exc
        return handle

    def submit_round(self, sampler: int) -> Handle:
        return self._run(Handle("round", sampler), self.samplers[sampler].generate_round)

    def submit_learner(self, method: str, *args: Any) -> Handle:
        return self._run(Handle("learner"), getattr(self.learner, method), *args)

    def wait(self, handles: Sequence[Handle], timeout_s: float | None) -> list[Handle]:
        return list(handles)

    def get(self, handle: Handle) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.payload

    def broadcast(self) -> tuple[int, float]:
        started = time.monotonic()
        weights, version = self.learner.weights(), self.learner.policy_version
        for sampler in self.samplers:
            sampler.set_weights(weights, version)
        return version, time.monotonic() - started

    def sampler_states(self) -> list[SamplerState]:
        return [s.get_state() for s in self.samplers]

    def restore_samplers(self, states: Sequence[SamplerState]) -> None:
        for sampler, state in zip(self.samplers, states, strict=True):
            sampler.restore(state)

    def recover_sampler(self, sampler: int, state: SamplerState) -> None:
        self.samplers[sampler].set_weights(self.learner.weights(), self.learner.policy_version)
        self.samplers[sampler].restore(state)

    def shutdown(self) -> None:
        for executor in self.executors:
            executor.stop()
