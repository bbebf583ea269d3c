"""A whole training run: SFT warm start -> critic pre-training -> CodeRL RL, with held-out pass@1
before and after, checkpoints, metrics and resume.

``train(config)`` is what ``coderl train`` and ``python -m driver`` run. It checks what it can
before touching the run directory (problem files, the model name, the Docker engine), starts what
the config does not provide (a Redis server kept in the run directory, executor workers), creates
the roles (Ray actors, or all in this process with ``use_ray=false``) and runs the phases
(driver/phases.py) in order.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import redis

from coderl import streams
from coderl.config import dump_config
from coderl.problem import Problem, ProblemFormatError
from coderl.redis_client import open_client, redact_url, redis_failure
from coderl.rollouts import TrainStreams
from learner.checkpoint import RunState, latest_checkpoint
from models.names import UnknownModelError, check_model_name

from .health import HealthWatcher, reap_sandboxes, run_failure
from .phases import phases_of
from .roles import LocalRoles, Roles, learner_arguments
from .run import EVALUATIONS_FILE, Run, read_evaluations
from .services import RunRedis
from .splits import ProblemSplits, load_splits
from .train_config import TrainConfig

__all__ = ["EVALUATIONS_FILE", "RunError", "TrainResult", "read_evaluations", "train"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CONFIG_ERROR, SERVICE_ERROR = 2, 3


class RunError(RuntimeError):
    """The run cannot start as configured; the message says what to change."""

    def __init__(self, message: str, exit_code: int = CONFIG_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        """2: the configuration or the run directory; 3: a service (Redis, Docker) is unavailable"""


@dataclass
class TrainResult:
    run_dir: Path
    state: RunState

    def pass_at_1(self, when: str) -> float | None:
        found = [e["pass@1"] for e in self.state.evaluations if e["when"] == when]
        return found[-1] if found else None


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    run_id, state, checkpoint = _existing_run(config.run_dir, resume)
    splits = _preflight(config)
    fresh = run_id is None
    run_id = run_id or uuid.uuid4().hex[:8]
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        (config.run_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id}) + "\n")
        (config.run_dir / "config.yaml").write_text(dump_config(config) + "\n")
    except OSError as exc:  # a full or read-only run directory: one line, exit code 3
        failure = run_failure(exc, config.run_dir)
        if failure is None:
            raise
        raise RunError(failure, SERVICE_ERROR) from None
    try:
        with ExitStack() as stack:
            redis_url = _redis(config, stack)
            names = streams.StreamNames(prefix=config.execution.prefix)
            channel = TrainStreams(names, run_id)
            _store_problems(redis_url, names, splits.all(), config.execution.redis_outage_s)
            reap_sandboxes(config.execution.worker.executor.sandbox, redis_url, names.prefix)
            roles = _start_roles(config, splits, redis_url, channel, checkpoint)
            stack.callback(roles.shutdown)  # before Redis stops: workers never see it go away
            fresh = False  # from here on the run directory is the run's, errors or not
            if state.samplers:
                from actors.sampler import SamplerState

                roles.restore_samplers([SamplerState.model_validate(s) for s in state.samplers])
            run = Run(config, roles, splits, state, redis_url, channel)
            stack.callback(run.close)
            execution = config.execution
            run.health = HealthWatcher(redis_url, execution.prefix, execution.no_executor_grace_s).start()
            stack.callback(run.health.stop)  # first: the roles' own shutdown is no executor death
            _run_phases(config, run)
    except BaseException as exc:
        if fresh:  # nothing ran: leave no half-made run directory to block the retry
            _remove_fresh_run(config.run_dir)
        stopped = _stopped_by(exc, config.run_dir, fresh)
        if stopped is None:
            raise
        raise stopped from None
    return TrainResult(config.run_dir, state)


def _stopped_by(exc: BaseException, run_dir: Path, fresh: bool) -> RunError | None:
    """The one-line error (exit code 3) of a run stopped by Redis gone longer than
    execution.redis_outage_s or refusing the password (in any role: a Ray task error carries it as
    its cause), a role dead for good, or a full or read-only run directory; None otherwise."""
    failure = redis_failure(exc) if isinstance(exc, Exception) else None
    if failure is not None:
        where = "" if fresh else f" (run directory {run_dir})"
        return RunError(f"{failure}{where}", SERVICE_ERROR)
    stopped = run_failure(exc, run_dir)
    return None if stopped is None else RunError(stopped, SERVICE_ERROR)


def _run_phases(config: TrainConfig, run: Run) -> None:
    if not run.state.evaluations:
        run.evaluate("before")
    phases = phases_of(config)
    owed = [
        (index, phase, phase.steps - run.state.phase_steps.get(phase.name, 0))
        for index, phase in enumerate(phases)
        if phase.steps > run.state.phase_steps.get(phase.name, 0)
    ]
    for number, (index, phase, remaining) in enumerate(owed, 1):
        run.start_phase(phase.name, index)
        phase.run(run, remaining)
        if phase.evaluate_after:
            run.evaluate(f"after {phase.name}")
        if number == len(owed):
            run.state.phase = "done"
        run.checkpoint(f"after-{phase.name}")  # after the evaluation: a run killed in it evaluates again
    if not owed and run.state.phase != "done":  # every phase asked for 0 steps
        run.state.phase = "done"
        run.checkpoint()


def _existing_run(run_dir: Path, resume: bool) -> tuple[str | None, RunState, Path | None]:
    """The run id, state and latest checkpoint of the run to resume; (None, fresh state, None) for
    a new run."""
    file = run_dir / RUN_FILE
    if not file.is_file():
        if resume:
            raise RunError(f"{run_dir} holds no run to resume: drop --resume to start one there")
        return None, RunState(), None
    if not resume:
        raise RunError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another run_dir"
        )
    run_id = str(json.loads(file.read_text())["run_id"])
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return run_id, RunState(), None
    state = RunState.model_validate_json((checkpoint / "state.json").read_text())
    log.info(
        "resuming %s from %s: %s, steps done %s", run_dir, checkpoint.name, state.phase, state.phase_steps
    )
    return run_id, state, checkpoint


def _preflight(config: TrainConfig) -> ProblemSplits:
    """What can be checked before the run directory is touched: the problems load, the models are
    presets, directories or hub names, and the Docker engine with the sandbox image is there."""
    try:
        splits = load_splits(config.problems)
    except (ProblemFormatError, FileNotFoundError, OSError) as exc:
        raise RunError(f"problems: {exc}") from None
    for key, name in (("policy.model", config.policy.model), ("critic.model", config.critic.model)):
        try:
            check_model_name(name)
        except UnknownModelError as exc:
            raise RunError(f"{key}: {exc}") from None
    sandbox = config.execution.worker.executor.sandbox
    if not config.execution.external_workers and sandbox.backend == "docker":
        from executor.sandbox.connection import SandboxUnavailable
        from executor.sandbox.pool import docker_client

        try:
            docker_client(sandbox).close()
        except SandboxUnavailable as exc:
            raise RunError(str(exc), SERVICE_ERROR) from None
    return splits


def _redis(config: TrainConfig, stack: ExitStack) -> str:
    if config.execution.redis_url is not None:
        return config.execution.redis_url
    try:
        server = RunRedis(config.run_dir / "redis")
    except RuntimeError as exc:
        raise RunError(str(exc), SERVICE_ERROR) from None
    stack.callback(server.stop)
    return server.url


def _store_problems(
    redis_url: str, names: streams.StreamNames, problems: Sequence[Problem], outage_s: float
) -> None:
    client = open_client(redis_url, outage_s)
    try:
        pipe = client.pipeline(transaction=False)
        for problem in problems:
            streams.store_problem(pipe, names, problem)  # type: ignore[arg-type]
        pipe.execute()  # SETs: sending them again after a lost reply changes nothing
    except redis.RedisError as exc:  # RedisUnavailable, RedisAuthError: one line already
        message = str(exc) if redis_failure(exc) else f"Redis at {redact_url(redis_url)}: {exc}"
        raise RunError(message, SERVICE_ERROR) from None
    finally:
        client.close()


def _start_roles(
    config: TrainConfig,
    splits: ProblemSplits,
    redis_url: str,
    channel: TrainStreams,
    checkpoint: Path | None,
) -> Roles:
    if config.use_ray:
        from .ray_roles import ClusterTooSmall, RayRoles  # ray loads only for Ray runs

        try:
            return RayRoles(config, splits, redis_url, channel, checkpoint)
        except ClusterTooSmall as exc:
            raise RunError(str(exc)) from None
    from learner.learner import Learner

    learner = Learner(**learner_arguments(config, splits, redis_url, channel, checkpoint))
    return LocalRoles(config, splits, redis_url, channel, learner)


def _remove_fresh_run(run_dir: Path) -> None:
    """Remove what a run that never started wrote (its id, config, Redis data, empty metrics)."""
    for name in (RUN_FILE, "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "redis", ignore_errors=True)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
