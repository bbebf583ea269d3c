"""The roles as Ray actors: the same plain classes (Sampler, Learner, ExecutorWorker), wrapped here
where the actors are created.

- Samplers restart on failure (``max_restarts``); the loop then re-sends the current weights.
- Executor workers restart too; requests a dead worker held are reclaimed from Redis by the others
  (or by its successor) after ``claim_idle_ms``.
- Weights travel learner -> object store -> samplers: the driver only passes the reference, and a
  sampler applies them between rounds (Ray runs one call of an actor at a time).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from actors.sampler import Sampler, SamplerState
from coderl.logs import LOG_LEVEL_ENV
from coderl.rollouts import TrainStreams
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker
from learner.learner import Learner

from .roles import Handle, Roles, executor_worker_config, make_samplers
from .splits import ProblemSplits
from .train_config import TrainConfig

__all__ = ["ExecutorActor", "RayRoles", "actor_name"]

log = logging.getLogger(__name__)

SAMPLER_RESTART_WAIT_S = 120.0
"""how long a failed sampler may take to come back before the run gives up on it"""


def actor_name(channel: TrainStreams, role: str) -> str:
    """Actors are named after the run (``coderl-{run}-sampler-0``): found in the dashboard, and by
    ``ray.get_actor`` for operations and tests."""
    return f"coderl-{channel.run_id}-{role}"


class ExecutorActor:
    """An executor service worker inside a Ray actor (its run loop in a thread)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.worker = ExecutorWorker(config)
        self.thread = threading.Thread(target=self.worker.run, name="executor", daemon=True)
        self.thread.start()

    def metrics(self) -> dict[str, float]:
        return self.worker.metrics()

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        self.worker.executor.close()


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
        learner_cls = ray.remote(num_cpus=0, num_gpus=config.learner.num_gpus)(Learner)
        self.learner = learner_cls.options(name=actor_name(channel, "learner")).remote(
            config, splits.sft, redis_url, channel, checkpoint
        )
        sampler_cls = ray.remote(num_cpus=0, num_gpus=config.sampler.num_gpus, max_restarts=3)(Sampler)
        self.samplers = [
            sampler_cls.options(name=actor_name(channel, f"sampler-{i}")).remote(**kwargs)
            for i, kwargs in make_samplers(config, splits, redis_url, channel)
        ]
        self.num_samplers = len(self.samplers)
        self.executors = []
        if not config.execution.external_workers:
            executor_cls = ray.remote(num_cpus=0, max_restarts=3, max_concurrency=4)(ExecutorActor)
            for i in range(config.execution.executor_actors):
                worker = executor_worker_config(config, redis_url, channel, i)
                self.executors.append(
                    executor_cls.options(name=actor_name(channel, f"executor-{i}")).remote(worker)
                )
        ray.get([actor.pid.remote() for actor in self.executors])  # fail now if a sandbox pool cannot start
        self._weights_ref: Any = None
        self._version = -1
        self._known_states: dict[int, SamplerState] = {}
        """each sampler's position after its last round (or restore), for checkpoints"""

    def submit_round(self, sampler: int) -> Handle:
        return Handle("round", sampler, payload=self.samplers[sampler].generate_round.remote())

    def submit_learner(self, method: str, *args: Any) -> Handle:
        return Handle("learner", payload=getattr(self.learner, method).remote(*args))

    def wait(self, handles: Sequence[Handle], timeout_s: float | None) -> list[Handle]:
        by_ref = {h.payload: h for h in handles}
        done, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout_s)
        more, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        return [by_ref[ref] for ref in {*done, *more}]

    def get(self, handle: Handle) -> Any:
        value = ray.get(handle.payload)
        if handle.kind == "round" and handle.sampler is not None:
            self._known_states[handle.sampler] = value.state
        return value

    def broadcast(self) -> tuple[int, float]:
        started = time.monotonic()
        version = ray.get(self.learner.policy_version_now.remote())
        self._weights_ref = self.learner.weights.remote()
        ray.wait([self._weights_ref], fetch_local=False)
        self._version = version
        for sampler in self.samplers:
            sampler.set_weights.remote(self._weights_ref, version)  # applied between its rounds
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
        if self._weights_ref is None:
            self.broadcast()
        actor = self.samplers[sampler]
        deadline = time.monotonic() + SAMPLER_RESTART_WAIT_S
        while True:
            try:  # calls made while Ray restarts the actor fail: retry until it is back
                weights = actor.set_weights.remote(self._weights_ref, self._version)
                ray.get([weights, actor.restore.remote(state)])
                self._known_states[sampler] = ray.get(actor.get_state.remote())
                return
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def shutdown(self) -> None:
        stops = [actor.stop.remote() for actor in self.executors]
        try:
            ray.get(stops, timeout=90)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("executor actors did not stop cleanly: %s", exc)
        for actor in [*self.executors, *self.samplers, self.learner]:
            ray.kill(actor)
