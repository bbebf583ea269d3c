"""One evaluation worker of ``coderl evaluate``: the policy (with the critic and the repair model
under critical sampling), an executor, and the ``CriticalSampler`` that judges one problem at a
time. The same plain class runs in the command's process (``LocalWorkers``) or inside each Ray
actor (driver/evaluate_ray.py, ``RayWorkers``); both hand back ``ProblemOutcome``s.

Each worker builds its own executor: the Redis service's client with ``--via``, else Docker
sandboxes on its own node. Critical sampling executes between its rounds, inside ``run``, so the
programs cannot be sent back to one executor in the driver without a round trip per stage; and
sandboxes beside the worker spread the execution over the cluster's nodes as the sampling is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coderl.cli import CommandError
from coderl.problem import Problem

from .critical_sampling import Candidate, CriticalSampler
from .evaluation import EvaluateConfig, WorkersConfig

__all__ = [
    "SERVICE_ERROR",
    "EvaluationWorker",
    "LocalWorkers",
    "ProblemOutcome",
    "WorkerSettings",
    "uses_ray",
]

log = logging.getLogger(__name__)

SERVICE_ERROR = 3
"""exit code: the sandboxes, the Redis service or a Ray worker are unavailable"""


def uses_ray(workers: WorkersConfig) -> bool:
    """Ray actors for more than one worker, for ``--ray``, and under ``ray job submit`` (which
    sets RAY_ADDRESS)."""
    return workers.count > 1 or workers.ray or bool(os.environ.get("RAY_ADDRESS"))


class WorkerSettings(BaseModel):
    """What a worker needs to build its models and its executor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    config: EvaluateConfig
    via: str | None = None
    """the executor service's Redis URL; None: Docker (or process) sandboxes in the worker"""
    backend: str | None = None
    """the in-process sandbox backend (docker, process); None: the executor's default"""


class ProblemOutcome(BaseModel):
    """A problem's N judged programs, in generation order, and the sampler's round counts."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    candidates: list[Candidate]
    stats: dict[str, int] = Field(default_factory=dict)
    """refine_rounds, repair_rounds, plain_rounds spent on this problem"""


class EvaluationWorker:
    """Loads nothing until ``start`` (so a Ray actor reports a load failure as the ``CommandError``
    it is, not as a dead actor); then ``run`` judges one problem after another."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.sampler: CriticalSampler | None = None
        self._close: Callable[[], None] = lambda: None

    def start(self) -> None:
        from actors.config import PolicyConfig  # torch loads only once the arguments are valid
        from actors.policy import Policy
        from critic.config import CriticConfig
        from critic.model import Critic

        config = self.settings.config
        execute, self._close = _executor(self.settings)
        try:
            policy = Policy.load(PolicyConfig(model=self.settings.model, device=config.device))
            critic = repairer = None
            if config.critical.enabled:
                assert config.critical.critic is not None
                critic = Critic.load(CriticConfig(model=config.critical.critic, device=config.device))
                critic.check_tokenizer(policy.tokenizer)
                if config.critical.repair_model is not None:
                    repairer = Policy.load(
                        PolicyConfig(model=config.critical.repair_model, device=config.device)
                    )
        except (OSError, ValueError) as exc:
            self.close()
            raise CommandError(f"cannot load a model: {exc}") from None
        self.sampler = CriticalSampler(
            policy,
            execute,
            config.sampling,
            critic=critic,
            repair_model=repairer,
            rounds=config.critical.rounds,
            repair_top_m=config.critical.repair_top_m,
        )

    def run(self, problem: Problem, seed: int | None) -> ProblemOutcome:
        if self.sampler is None:
            raise RuntimeError("EvaluationWorker.run before start")
        before = dict(self.sampler.stats)
        candidates = self.sampler.run(problem, self.settings.config.n, seed)
        stats = {key: count - before.get(key, 0) for key, count in self.sampler.stats.items()}
        return ProblemOutcome(
            task_id=problem.task_id, candidates=candidates, stats={k: v for k, v in stats.items() if v}
        )

    def close(self) -> None:
        close, self._close = self._close, lambda: None
        close()


class LocalWorkers:
    """One ``EvaluationWorker`` in this process: the problems one after another, in order."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = EvaluationWorker(settings)
        self.worker.start()

    def imap(self, todo: Sequence[tuple[Problem, int | None]]) -> Iterator[tuple[Problem, ProblemOutcome]]:
        for problem, seed in todo:
            yield problem, self.worker.run(problem, seed)

    def close(self) -> None:
        self.worker.close()


def _executor(settings: WorkerSettings) -> tuple[Any, Callable[[], None]]:
    from executor.config import ExecutorConfig
    from executor.engine import ExecutionItem, Executor

    if settings.via is not None:
        from coderl.redis_client import redact_url
        from executor.client import ClientConfig, RedisExecutionClient

        try:
            engine: Any = RedisExecutionClient(ClientConfig(redis_url=settings.via))
        except Exception as exc:  # noqa: BLE001 - any connection failure is one line
            raise CommandError(f"--via {redact_url(settings.via)}: {exc}", SERVICE_ERROR) from None
    else:
        config = (
            ExecutorConfig()
            if settings.backend is None
            else ExecutorConfig(sandbox={"backend": settings.backend})
        )
        try:
            engine = Executor(config)
        except Exception as exc:  # noqa: BLE001 - Docker missing, image missing: one line
            raise CommandError(
                f"cannot start the sandboxes ({type(exc).__name__}: {exc}); build the image with "
                "deploy/build-images.sh, or pass --via REDIS_URL to use the executor service",
                SERVICE_ERROR,
            ) from None

    def execute(programs: Any, which: str) -> Any:
        return engine.execute_many([ExecutionItem(problem, program, which) for problem, program in programs])

    return execute, engine.close
