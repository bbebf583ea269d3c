"""The roles of a run (samplers, learner, executors) behind one typed interface, so the same loop
drives them in this process or as Ray actors (driver/ray_roles.py).

A call that may take long returns a ``Pending``: the loop waits on several at once
(``Roles.wait``) and reads each with ``result()``. In-process calls run eagerly, which is why the
in-process run is always synchronous (generate -> execute -> learn in turn).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from actors.sampler import RoundReport, Sampler, SamplerState, shard
from coderl.problem import Problem
from coderl.rollouts import TrainStreams
from coderl.wire import SampledProgram
from executor.service_config import WorkerConfig, WorkerSettings
from learner.learner import Learner
from learner.reports import LearnerStatus, SFTReport, StepReport

from .services import ExecutorThread
from .splits import ProblemSplits
from .train_config import TrainConfig

__all__ = [
    "Done",
    "LearnerProxy",
    "LocalLearner",
    "LocalRoles",
    "Pending",
    "Roles",
    "executor_worker_config",
    "learner_arguments",
    "make_samplers",
]

T = TypeVar("T")


class Pending(abc.ABC, Generic[T]):
    """A call in flight to a role."""

    sampler: int | None = None
    """the sampler of a sampling round; None for a learner call"""

    @abc.abstractmethod
    def result(self) -> T:
        """The call's value (waiting for it if needed); re-raises the call's error."""


class Done(Pending[T]):
    """An in-process call, already run."""

    def __init__(self, fn: Callable[..., T], *args: Any, sampler: int | None = None) -> None:
        self.sampler = sampler
        self._error: BaseException | None = None
        try:
            self._value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the loop through result(), like a Ray error
            self._error = exc

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value


class LearnerProxy(abc.ABC):
    """The learner as the driver calls it: learner.learner.Learner's methods, typed, whether it
    runs in this process (``LocalLearner``) or as a Ray actor (driver/ray_roles.RayLearner)."""

    @abc.abstractmethod
    def rl_update(self) -> Pending[StepReport]: ...

    @abc.abstractmethod
    def critic_update(self) -> Pending[StepReport]: ...

    @abc.abstractmethod
    def sft(self, steps: int, total_steps: int | None = None) -> Pending[SFTReport]:
        """``steps`` more warm-start steps of a phase of ``total_steps`` (default ``steps``)."""

    @abc.abstractmethod
    def status(self) -> LearnerStatus: ...

    @abc.abstractmethod
    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]: ...

    @abc.abstractmethod
    def save(self, directory: Path) -> None: ...

    @abc.abstractmethod
    def acknowledge_settled(self) -> int: ...


class LocalLearner(LearnerProxy):
    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def rl_update(self) -> Pending[StepReport]:
        return Done(self.learner.rl_update)

    def critic_update(self) -> Pending[StepReport]:
        return Done(self.learner.critic_update)

    def sft(self, steps: int, total_steps: int | None = None) -> Pending[SFTReport]:
        return Done(self.learner.sft, steps, total_steps)

    def status(self) -> LearnerStatus:
        return self.learner.status()

    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        return self.learner.greedy_programs(problems, max_new_tokens)

    def save(self, directory: Path) -> None:
        self.learner.save(directory)

    def acknowledge_settled(self) -> int:
        return self.learner.acknowledge_settled()


class Roles(abc.ABC):
    learner: LearnerProxy
    num_samplers: int

    @abc.abstractmethod
    def submit_round(self, sampler: int) -> Pending[RoundReport]: ...

    @abc.abstractmethod
    def wait(self, pending: Sequence[Pending[Any]], timeout_s: float | None) -> list[Pending[Any]]:
        """Those of ``pending`` that have finished (at least one, unless the timeout passes)."""

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


def learner_arguments(
    config: TrainConfig, splits: ProblemSplits, redis_url: str, channel: TrainStreams, checkpoint: Path | None
) -> dict[str, Any]:
    """The learner's constructor arguments: its own sections of the run's config."""
    return {
        "config": config.learner,
        "policy": config.policy,
        "critic": config.critic,
        "sft": config.sft,
        "samples_per_group": config.sampler.sampling.n,
        "sft_problems": splits.sft,
        "redis_url": redis_url,
        "channel": channel,
        "checkpoint": checkpoint,
        "seed": config.seed,
        "audit_file": config.run_dir / AUDIT_FILE if config.learner.audit else None,
        "redis_outage_s": config.execution.redis_outage_s,
    }


AUDIT_FILE = "audit.jsonl"
"""with learner.audit: the sample ids of every update, one line each (tests, debugging)"""


def make_samplers(
    config: TrainConfig, splits: ProblemSplits, redis_url: str, channel: TrainStreams
) -> list[dict[str, Any]]:
    """Constructor arguments of each sampler (the same for both kinds of roles)."""
    count = config.sampler.num_samplers
    return [
        {
            "sampler_id": i,
            "config": config.sampler,
            "policy_config": config.policy,
            "problems": shard(splits.rl, i, count),
            "redis_url": redis_url,
            "channel": channel,
            "greedy_baseline": config.learner.loss.baseline == "greedy",
            "seed": config.seed,
            "redis_outage_s": config.execution.redis_outage_s,
        }
        for i in range(count)
    ]


def executor_worker_config(
    settings: WorkerSettings,
    redis_url: str,
    prefix: str,
    channel: TrainStreams,
    index: int,
    redis_outage_s: float,
) -> WorkerConfig:
    """The configuration of the ``index``-th executor worker the run starts itself
    (``redis_outage_s``: the run's execution.redis_outage_s)."""
    return WorkerConfig(
        **settings.model_dump(),
        redis_url=redis_url,
        redis_outage_s=redis_outage_s,
        prefix=prefix,
        worker_id=f"{channel.run_id}-executor-{index}",
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
        self.local_learner = learner
        self.learner = LocalLearner(learner)
        self.samplers = [Sampler(**kwargs) for kwargs in make_samplers(config, splits, redis_url, channel)]
        self.num_samplers = len(self.samplers)
        execution = config.execution
        self.executors = []
        if not execution.external_workers:
            for i in range(execution.executor_actors):
                worker = executor_worker_config(
                    execution.worker, redis_url, execution.prefix, channel, i, execution.redis_outage_s
                )
                self.executors.append(ExecutorThread(worker))

    def submit_round(self, sampler: int) -> Pending[RoundReport]:
        return Done(self.samplers[sampler].generate_round, sampler=sampler)

    def wait(self, pending: Sequence[Pending[Any]], timeout_s: float | None) -> list[Pending[Any]]:
        return list(pending)

    def broadcast(self) -> tuple[int, float]:
        started = time.monotonic()
        weights = self.local_learner.weights()  # packed once, carrying its version
        for sampler in self.samplers:
            sampler.set_weights(weights)
        return weights.version, time.monotonic() - started

    def sampler_states(self) -> list[SamplerState]:
        return [s.get_state() for s in self.samplers]

    def restore_samplers(self, states: Sequence[SamplerState]) -> None:
        for sampler, state in zip(self.samplers, states, strict=True):
            sampler.restore(state)

    def recover_sampler(self, sampler: int, state: SamplerState) -> None:
        self.samplers[sampler].set_weights(self.local_learner.weights())
        self.samplers[sampler].restore(state)

    def shutdown(self) -> None:
        for executor in self.executors:
            executor.stop()
