"""``coderl evaluate`` over Ray: ``workers.count`` actors, each an ``EvaluationWorker``
(driver/evaluate_worker.py) with its own models and executor, handed problems from one queue.

- Problems are handed out one at a time: an actor gets the next problem when it returns one, so a
  slow problem holds up only its own actor. Each problem's seed comes from its position in the
  problem list, so the programs and verdicts are those of an in-process run; only the order in
  which problems finish differs (the command rewrites the files in problem order at the end).
- Ray starts as ``coderl train`` starts it (driver/ray_roles.py): ``RAY_ADDRESS`` joins a cluster,
  otherwise a local instance starts; an instance this module started is shut down at the end, one
  it found running is left alone.
- A worker that dies (its node lost, killed, out of memory) is not replaced: the others finish the
  problems they hold, those are written, and the command ends with a one-line ``CommandError``;
  ``--resume`` then redoes only the unfinished problems. A failure to load a model or to start the
  sandboxes in a worker is the same ``CommandError`` the in-process run gives.
- Actors ask for no CPU slots (as train's roles): their number is chosen by ``--workers``.
  ``workers.num_gpus`` and ``workers.resources`` place them; the cluster must have enough of both
  in total, or the command refuses before starting any.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from coderl.cli import CommandError
from coderl.logs import LOG_LEVEL_ENV
from coderl.problem import Problem

from .evaluate_worker import SERVICE_ERROR, EvaluationWorker, ProblemOutcome, WorkerSettings
from .evaluation import WorkersConfig

__all__ = ["RayWorkers", "check_cluster"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 60.0
"""how long a worker may take to close its sandboxes before it is killed"""


def check_cluster(workers: WorkersConfig, cluster: dict[str, float]) -> None:
    """Refuse GPU and custom resource requests the cluster cannot meet in total (the actors would
    wait forever)."""
    wanted = {"GPU": workers.count * workers.num_gpus}
    wanted |= {name: workers.count * amount for name, amount in workers.resources.items()}
    for name, amount in sorted(wanted.items()):
        if amount > cluster.get(name, 0.0):
            what = "workers.num_gpus" if name == "GPU" else f"workers.resources[{name!r}]"
            raise CommandError(
                f"{workers.count} workers x {what} ask for {amount:g} {name} but the Ray cluster has "
                f"{cluster.get(name, 0.0):g}: lower --workers or the request, or add nodes that have it"
            )


class RayWorkers:
    """``workers.count`` Ray actors of ``EvaluationWorker``, started and ready (models loaded)."""

    def __init__(self, settings: WorkerSettings) -> None:
        workers = settings.config.workers
        self.started_ray = _init_ray()
        self.actors: list[Any] = []
        try:
            check_cluster(workers, ray.cluster_resources())
            actor_cls = ray.remote(num_cpus=0, num_gpus=workers.num_gpus, resources=workers.resources)(
                EvaluationWorker
            )
            prefix = f"coderl-evaluate-{os.getpid()}"
            self.actors = [
                actor_cls.options(name=f"{prefix}-worker-{index}").remote(settings)
                for index in range(workers.count)
            ]
            for index, ref in enumerate([actor.start.remote() for actor in self.actors]):
                _get(ref, index, "while starting")
        except BaseException:
            self.close()
            raise
        log.info("%d evaluation workers ready on Ray (actors %s-worker-N)", len(self.actors), prefix)

    def imap(self, todo: Sequence[tuple[Problem, int | None]]) -> Iterator[tuple[Problem, ProblemOutcome]]:
        """The problems' outcomes as they finish. After a worker fails, no problem is handed out;
        the others' problems in flight are still yielded, then the failure is raised."""
        queue = deque(todo)
        in_flight: dict[Any, tuple[int, Problem]] = {}
        failure: CommandError | None = None

        def hand_out(index: int) -> None:
            if queue and failure is None:
                problem, seed = queue.popleft()
                in_flight[self.actors[index].run.remote(problem, seed)] = (index, problem)

        for index in range(len(self.actors)):
            hand_out(index)
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            index, problem = in_flight.pop(ref)
            try:
                outcome = _get(ref, index, f"on problem {problem.task_id}")
            except CommandError as exc:
                failure = failure or exc
                continue
            hand_out(index)
            yield problem, outcome
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Close every worker's sandboxes, end the actors, and shut down a Ray this started."""
        closing = [actor.close.remote() for actor in self.actors]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False


def _init_ray() -> bool:
    """Join RAY_ADDRESS's cluster or start a local instance, as ``coderl train`` does; True when
    this call started (or joined) Ray and so must shut it down."""
    if ray.is_initialized():
        return False
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    runtime_env = {
        "worker_process_setup_hook": "coderl.logs.setup_worker_logging",
        "env_vars": {LOG_LEVEL_ENV: str(level)},
    }
    try:
        ray.init(log_to_driver=True, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        address = os.environ.get("RAY_ADDRESS")
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
        raise CommandError(f"cannot start {where}: {exc}", SERVICE_ERROR) from None
    return True


def _get(ref: Any, index: int, doing: str) -> Any:
    """A worker call's result; its ``CommandError`` as is, a dead actor as a one-line one."""
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, CommandError):
            raise CommandError(f"worker {index}: {exc.cause}", exc.cause.exit_code) from None
        raise
    except RayActorError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CommandError(
            f"evaluation worker {index} died {doing} ({reason}); the problems finished are kept: "
            "rerun with --resume to do the rest",
            SERVICE_ERROR,
        ) from None
