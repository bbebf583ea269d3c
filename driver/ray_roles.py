"""The roles as Ray actors: the same plain classes (Sampler, Learner, ExecutorWorker), wrapped here
where the actors are created, and called through the same typed interface (``RayLearner``).

- A sampler that dies is replaced by the driver (``RayRoles.recover_sampler``), not restarted by
  Ray: Ray re-runs a restarted actor's constructor with its original arguments, and a large one
  (the problems, over Ray's 100 KiB inline limit) has been freed by then (ray-project/ray#53727).
  The driver keeps each sampler's problems in the object store for the run's life, starts the new
  actor with them and sends it the current weights and its last position.
- Roles go to the nodes that have their custom resources (``learner.resources``,
  ``sampler.resources``), GPUs by ``num_gpus``.
- Executor workers restart too; requests a dead worker held are reclaimed from Redis by the others
  (or by its successor) after ``claim_idle_ms``.
- Weights travel learner -> object store -> samplers, packed (models/weight_sync.py): the driver
  only passes the reference, and a sampler applies them between rounds (Ray runs one call of an
  actor at a time). With ``sync.method = "collective"`` they travel over a process group of the
  learner and the samplers instead (driver/collective.py); a restarted sampler gets them through
  the object store, and the group is rebuilt at the next broadcast.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import ray

from actors.sampler import RoundReport, SamplerState
from coderl.logs import LOG_LEVEL_ENV
from coderl.problem import Problem
from coderl.rollouts import TrainStreams
from coderl.wire import SampledProgram
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker
from learner.reports import LearnerStatus, SFTReport, StepReport

from .collective import SYNC_GROUP, CollectiveBroadcast, backend_of, node_ip
from .role_metrics import ExecutorRecorder, MeteredLearner, MeteredSampler
from .roles import LearnerProxy, Pending, Roles, executor_worker_config, learner_arguments, make_samplers
from .services import free_port
from .splits import ProblemSplits
from .train_config import TrainConfig

__all__ = ["ExecutorActor", "RayLearner", "RayPending", "RayRoles", "actor_name"]

T = TypeVar("T")

log = logging.getLogger(__name__)

SAMPLER_RESTART_WAIT_S = 120.0
"""how long a failed sampler may take to come back before the run gives up on it"""
MAX_SAMPLER_REPLACEMENTS = 3
"""new actors started in one recovery of a sampler before the run gives up on it"""


def actor_name(channel: TrainStreams, role: str) -> str:
    """Actors are named after the run (``coderl-{run}-sampler-0``): found in the dashboard, and by
    ``ray.get_actor`` for operations and tests."""
    return f"coderl-{channel.run_id}-{role}"


class ExecutorActor:
    """An executor service worker inside a Ray actor (its run loop in a thread), recording its
    counters as Ray metrics (driver/role_metrics.py)."""

    def __init__(self, config: WorkerConfig, run_id: str, index: int) -> None:
        self.worker = ExecutorWorker(config)
        self.thread = threading.Thread(target=self.worker.run, name="executor", daemon=True)
        self.thread.start()
        self.recorder = ExecutorRecorder(self.worker, run_id, index)

    def metrics(self) -> dict[str, float]:
        return self.worker.metrics()

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        self.recorder.stop()
        self.worker.executor.close()


class RayPending(Pending[T]):
    """A Ray call in flight: its object reference."""

    def __init__(self, ref: Any, sampler: int | None = None) -> None:
        self.ref = ref
        self.sampler = sampler

    def result(self) -> T:
        return ray.get(self.ref)  # type: ignore[no-any-return]


class ClusterTooSmall(ValueError):
    """The Ray cluster lacks the GPUs or custom resources the configuration asks for (its actors
    would never start)."""


def check_gpus(config: TrainConfig, available: float) -> None:
    """Refuse a configuration whose learner ranks and samplers ask for more GPUs than the cluster has."""
    learner = config.learner.world_size * config.learner.num_gpus
    samplers = config.sampler.num_samplers * config.sampler.num_gpus
    if learner + samplers > available:
        raise ClusterTooSmall(
            f"the run asks for {learner + samplers:g} GPUs (learner.world_size {config.learner.world_size} "
            f"x learner.num_gpus {config.learner.num_gpus:g} + sampler.num_samplers "
            f"{config.sampler.num_samplers} x sampler.num_gpus {config.sampler.num_gpus:g}) but the Ray "
            f"cluster has {available:g}: lower learner.world_size or the GPU requests, or add GPU nodes"
        )


def check_resources(config: TrainConfig, cluster: dict[str, float]) -> None:
    """Refuse custom resource requests (``learner.resources``, ``sampler.resources``) that the Ray
    cluster's nodes do not add up to (checked in total, not node by node)."""
    learner, sampler = config.learner, config.sampler
    for name in sorted({*learner.resources, *sampler.resources}):
        wanted = learner.world_size * learner.resources.get(name, 0.0)
        wanted += sampler.num_samplers * sampler.resources.get(name, 0.0)
        have = cluster.get(name, 0.0)
        if wanted > have:
            raise ClusterTooSmall(
                f"the run asks for {wanted:g} of resource {name!r} (learner.resources x learner.world_size "
                f"+ sampler.resources x sampler.num_samplers) but the Ray cluster has {have:g}: "
                f"start nodes with `ray start --resources '{{\"{name}\": N}}'` or change the requests"
            )


class RayLearner(LearnerProxy):
    """The learner behind the typed interface: its ranks as Ray actors. Updates run on every rank
    at once; the rest asks rank 0 (the ranks' weights are identical)."""

    def __init__(self, actors: Sequence[Any]) -> None:
        self.ranks = list(actors)
        self.actor = self.ranks[0]

    def rl_update(self) -> Pending[StepReport]:
        return _RanksPending([rank.rl_update.remote() for rank in self.ranks])

    def critic_update(self) -> Pending[StepReport]:
        return _RanksPending([rank.critic_update.remote() for rank in self.ranks])

    def sft(self, steps: int, total_steps: int | None = None) -> Pending[SFTReport]:
        return _RanksPending([rank.sft.remote(steps, total_steps) for rank in self.ranks])

    def status(self) -> LearnerStatus:
        return ray.get(self.actor.status.remote())  # type: ignore[no-any-return]

    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        return ray.get(self.actor.greedy_programs.remote(list(problems), max_new_tokens))  # type: ignore[no-any-return]

    def save(self, directory: Path) -> None:
        ray.get(self.actor.save.remote(directory))

    def acknowledge_settled(self) -> int:
        return int(ray.get(self.actor.acknowledge_settled.remote()))

    def weights_ref(self) -> Any:
        """The weights, left in the object store (samplers fetch them from there)."""
        return self.actor.weights.remote()


class RayRoles(Roles):
    def __init__(
        self,
        config: TrainConfig,
        splits: ProblemSplits,
        redis_url: str,
        channel: TrainStreams,
        checkpoint: Path | None,
    ) -> None:
        if not ray.is_initialized():
            # RAY_ADDRESS (set by `ray job submit`) joins a cluster; otherwise a local one starts.
            level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
            runtime_env = {
                "worker_process_setup_hook": "coderl.logs.setup_worker_logging",
                "env_vars": {LOG_LEVEL_ENV: str(level)},
            }
            ray.init(log_to_driver=True, runtime_env=runtime_env)
        # Actors ask for no CPU slots: they are long-lived and we size them ourselves; on a small
        # host, slots would leave the third actor pending forever.
        cluster = ray.cluster_resources()
        check_gpus(config, cluster.get("GPU", 0.0))
        check_resources(config, cluster)
        self.learner_ranks = _start_learner(
            config, learner_arguments(config, splits, redis_url, channel, checkpoint)
        )
        self.learner = RayLearner(self.learner_ranks)
        collective = config.sync.method == "collective"
        groups = {SYNC_GROUP: 1} if collective else None  # weight-sync calls: a thread beside the rounds
        self._sampler_cls = _sampler_class(config, groups)
        self._channel = channel
        self._sampler_arguments = [
            {**kwargs, "problems": ray.put(kwargs["problems"])}  # resolved by Ray: a top-level argument
            for kwargs in make_samplers(config, splits, redis_url, channel)
        ]
        """each sampler's constructor arguments, its problems held in the object store for the run"""
        self.samplers = [self._start_sampler(i) for i in range(len(self._sampler_arguments))]
        self.num_samplers = len(self.samplers)
        self.collective = (
            CollectiveBroadcast(self.learner.actor, self.samplers, config.sync, backend_of(config))
            if collective
            else None
        )
        self.executors = []
        execution = config.execution
        if not execution.external_workers:
            executor_cls = ray.remote(num_cpus=0, max_restarts=3, max_concurrency=4)(ExecutorActor)
            for i in range(execution.executor_actors):
                worker = executor_worker_config(
                    execution.worker, redis_url, execution.prefix, channel, i, execution.redis_outage_s
                )
                self.executors.append(
                    executor_cls.options(name=actor_name(channel, f"executor-{i}")).remote(
                        worker, channel.run_id, i
                    )
                )
        ray.get([actor.pid.remote() for actor in self.executors])  # fail now if a sandbox pool cannot start
        self._weights_ref: Any = None
        """the newest weights sent through the object store (None: sent collectively since)"""
        self._known_states: dict[int, SamplerState] = {}
        """each sampler's position after its last round (or restore), for checkpoints"""

    def submit_round(self, sampler: int) -> Pending[RoundReport]:
        return _RoundPending(self, self.samplers[sampler].generate_round.remote(), sampler)

    def wait(self, pending: Sequence[Pending[Any]], timeout_s: float | None) -> list[Pending[Any]]:
        by_ref = {_ref(p): p for p in pending}
        done, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout_s)
        more, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        return [by_ref[ref] for ref in {*done, *more}]

    def broadcast(self) -> tuple[int, float]:
        started = time.monotonic()
        version = self.learner.status().policy_version
        if self.collective is not None and self.collective.broadcast():
            self._weights_ref = None  # a sampler restarting later fetches the newest weights
            return version, time.monotonic() - started
        self._weights_ref = self.learner.weights_ref()
        ray.wait([self._weights_ref], fetch_local=False)
        for sampler in self.samplers:
            sampler.set_weights.remote(self._weights_ref)  # applied between its rounds, with their version
        return version, time.monotonic() - started

    def sampler_states(self) -> list[SamplerState]:
        """Each sampler's position. A sampler that is restarting, or restarted and not yet restored by
        the loop, answers with nothing or with a fresh state: its last reported position stands in."""
        refs = [s.get_state.remote() for s in self.samplers]
        states = []
        for index, ref in enumerate(refs):
            known = self._known_states.get(index)
            try:
                state: SamplerState = ray.get(ref, timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                if known is None:
                    raise
                log.warning("sampler %d unavailable (%s); using its last reported position", index, exc)
                state = known
            if known is not None and (state.incarnation, state.rounds) < (known.incarnation, known.rounds):
                state = known  # restarted by Ray, not yet restored: its own state is a fresh one
            states.append(state)
        return states

    def restore_samplers(self, states: Sequence[SamplerState]) -> None:
        ray.get([s.restore.remote(state) for s, state in zip(self.samplers, states, strict=True)])
        self._known_states = dict(enumerate(ray.get([s.get_state.remote() for s in self.samplers])))

    def recover_sampler(self, sampler: int, state: SamplerState) -> None:
        """The sampler (a new actor in place of a dead one) gets the current weights and ``state``."""
        if self.collective is not None:
            self.collective.reset()  # a new sampler is in no group: the next broadcast rebuilds it
        if self._weights_ref is None:
            self._weights_ref = self.learner.weights_ref()
        deadline = time.monotonic() + SAMPLER_RESTART_WAIT_S
        replaced = 0
        while True:
            actor = self.samplers[sampler]
            try:
                weights = actor.set_weights.remote(self._weights_ref)
                ray.get([weights, actor.restore.remote(state)])
                self._known_states[sampler] = ray.get(actor.get_state.remote())
                return
            except ray.exceptions.ActorDiedError:
                replaced += 1
                if replaced > MAX_SAMPLER_REPLACEMENTS:
                    raise  # its constructor keeps failing: not a lost process
                self._replace_sampler(sampler, deadline)
            except ray.exceptions.ActorUnavailableError:  # unreachable for now (e.g. its node is busy)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _start_sampler(self, index: int) -> Any:
        name = actor_name(self._channel, f"sampler-{index}")
        return self._sampler_cls.options(name=name).remote(**self._sampler_arguments[index])

    def _replace_sampler(self, index: int, deadline: float) -> None:
        """A new actor, same name and arguments, for the dead sampler ``index``."""
        log.warning("sampler %d died; starting a new one", index)
        ray.kill(self.samplers[index], no_restart=True)  # (dead already) its name is released with it
        while True:
            try:
                self.samplers[index] = self._start_sampler(index)
                break
            except ValueError:  # Ray has not released the dead actor's name yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        if self.collective is not None:
            self.collective.samplers[index] = self.samplers[index]

    def shutdown(self) -> None:
        stops = [actor.stop.remote() for actor in self.executors]
        try:
            ray.get(stops, timeout=90)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("executor actors did not stop cleanly: %s", exc)
        for actor in [*self.executors, *self.samplers, *self.learner_ranks]:
            ray.kill(actor)
        self._sampler_arguments.clear()  # their problems leave the object store


class _RoundPending(RayPending[RoundReport]):
    """A sampling round; its result also records the sampler's position (for checkpoints while a
    restarted sampler cannot answer)."""

    def __init__(self, roles: RayRoles, ref: Any, sampler: int) -> None:
        super().__init__(ref, sampler)
        self.roles = roles

    def result(self) -> RoundReport:
        report = super().result()
        self.roles._known_states[report.sampler_id] = report.state
        return report


class _RanksPending(RayPending[T]):
    """One call on every learner rank: rank 0's result, once every rank is done (a failed rank
    fails it)."""

    def __init__(self, refs: Sequence[Any]) -> None:
        super().__init__(refs[0])
        self.others = list(refs[1:])

    def result(self) -> T:
        ray.get(self.others)
        return super().result()


def _sampler_class(config: TrainConfig, groups: dict[str, int] | None) -> Any:
    """The samplers' actor class. No max_restarts: the driver replaces a dead sampler itself
    (module docstring)."""
    sampler = config.sampler
    return ray.remote(
        num_cpus=0, num_gpus=sampler.num_gpus, resources=sampler.resources, concurrency_groups=groups
    )(MeteredSampler)


def _start_learner(config: TrainConfig, arguments: dict[str, Any]) -> list[Any]:
    """The learner's ranks (``learner.world_size``), joined into one torch.distributed group."""
    world_size = config.learner.world_size
    learner_cls = ray.remote(
        num_cpus=0, num_gpus=config.learner.num_gpus, resources=config.learner.resources
    )(MeteredLearner)
    channel: TrainStreams = arguments["channel"]
    ranks = [
        learner_cls.options(name=actor_name(channel, "learner" if rank == 0 else f"learner-{rank}")).remote(
            **arguments, rank=rank
        )
        for rank in range(world_size)
    ]
    if world_size > 1:
        address = ray.get(ranks[0].__ray_call__.remote(_rendezvous_address))
        ray.get([rank.join_data_parallel.remote(address) for rank in ranks])
        log.info("%d learner ranks joined at %s", world_size, address)
    return ranks


def _rendezvous_address(actor: object) -> str:
    """Run inside rank 0's actor: ``host:port`` on its node for torch.distributed's rendezvous (a
    free port now; another process could take it before the group binds it, a small window at
    start-up only)."""
    return f"{node_ip(actor)}:{free_port()}"


def _ref(pending: Pending[Any]) -> Any:
    if not isinstance(pending, RayPending):
        raise TypeError(f"RayRoles waits on Ray calls only, not {type(pending).__name__}")
    return pending.ref
