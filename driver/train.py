"""A whole training run: sft warm start -> critic pre-training -> CodeRL RL, with held-out pass@1
before and after, checkpoints, metrics and resume.

``train(config)`` is what ``coderl train`` and ``python -m driver`` run. It starts what the config
does not provide (a Redis server kept in the run directory, executor workers), creates the roles (Ray
actors, or all in this process with ``use_ray=false``) and drives them with driver/loop.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from coderl import streams
from coderl.config import dump_config
from coderl.problem import Problem
from coderl.rollouts import TrainStreams, queue_depths
from executor.client import ClientConfig, RedisExecutionClient
from executor.engine import ExecutionItem
from learner.checkpoint import RunState, latest_checkpoint, write_checkpoint_dir, write_json
from learner.learner import StepReport

from .loop import PhaseClock, run_updates
from .metrics import MetricsSink
from .roles import LocalRoles, Roles
from .services import RunRedis
from .splits import ProblemSplits, load_splits
from .train_config import TrainConfig

__all__ = ["EVALUATIONS_FILE", "RunError", "TrainResult", "read_evaluations", "train"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class RunError(RuntimeError):
    """The run cannot start as configured; the message says what to change."""


@dataclass
class TrainResult:
    run_dir: Path
    state: RunState

    def pass_at_1(self, when: str) -> float | None:
        found = [e["pass@1"] for e in self.state.evaluations if e["when"] == when]
        return found[-1] if found else None


def _run_id(run_dir: Path, resume: bool) -> str:
    file = run_dir / RUN_FILE
    if file.is_file():
        if not resume:
            raise RunError(
                f"{run_dir} already holds a run: pass --resume to continue it, or choose another run_dir"
            )
        return str(json.loads(file.read_text())["run_id"])
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    file.write_text(json.dumps({"run_id": run_id}) + "\n")
    return run_id


def _redis(config: TrainConfig, run_dir: Path, stack: ExitStack) -> str:
    if config.execution.redis_url is not None:
        return config.execution.redis_url
    server = RunRedis(run_dir / "redis")
    stack.callback(server.stop)
    return server.url


def _store_problems(redis_url: str, names: streams.StreamNames, problems: Sequence[Problem]) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    pipe = client.pipeline(transaction=False)
    for problem in problems:
        streams.store_problem(pipe, names, problem)  # type: ignore[arg-type]
    pipe.execute()
    client.close()


def _make_roles(
    config: TrainConfig, splits: ProblemSplits, redis_url: str, channel: TrainStreams, checkpoint: Path | None
) -> Roles:
    if config.use_ray:
        from .ray_roles import RayRoles  # ray loads only for Ray runs

        return RayRoles(config, splits, redis_url, channel, checkpoint)
    from learner.learner import Learner

    learner = Learner(config, splits.sft, redis_url, channel, checkpoint)
    return LocalRoles(config, splits, redis_url, channel, learner)


def evaluate(
    roles: Roles, problems: Sequence[Problem], config: TrainConfig, redis_url: str
) -> dict[str, Any]:
    """Held-out pass@1 of the learner's policy with greedy decoding, judged by the executor workers."""
    chosen = list(problems[: config.eval.problems])
    programs = roles.call_learner("evaluate", chosen, config.eval.max_new_tokens)
    client = RedisExecutionClient(
        ClientConfig(redis_url=redis_url, prefix=config.execution.prefix, timeout_s=1800)
    )
    try:
        by_id = {p.task_id: p for p in chosen}
        items = [ExecutionItem(by_id[s.task_id], s.program, "hidden") for s in programs]
        results = client.execute_many(items)
    finally:
        client.close()
    passed = sum(r.passed for r in results)
    verdicts = {s.task_id: r.verdict.value for s, r in zip(programs, results, strict=True)}
    return {
        "problems": len(chosen),
        "passed": passed,
        "pass@1": passed / max(1, len(chosen)),
        "verdicts": verdicts,
    }


EVALUATIONS_FILE = "evaluations.jsonl"
"""one line per held-out evaluation: when, policy_version, pass@1, passed, problems and the
verdict of each problem's greedy program"""


def read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """The run's evaluation records, oldest first; none if it has not evaluated yet."""
    path = run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Run:
    """The state of one run while it goes: roles, metrics, checkpoints, phases."""

    def __init__(
        self,
        config: TrainConfig,
        roles: Roles,
        splits: ProblemSplits,
        state: RunState,
        redis_url: str,
        channel: TrainStreams,
    ):
        self.config, self.roles, self.splits, self.state = config, roles, splits, state
        self.redis_url = redis_url
        self.channel = channel
        self.client = redis.Redis.from_url(redis_url, socket_timeout=10)
        self.metrics = MetricsSink(config.run_dir)
        self._queue_metrics = True

    def queue_depths(self) -> dict[str, float]:
        """The run's Redis queues; a failed read is logged once and not tried again (metrics
        never stop training)."""
        if not self._queue_metrics:
            return {}
        try:
            return queue_depths(self.client, self.channel)
        except redis.RedisError as exc:
            log.warning("queue depth metrics disabled: %s: %s", type(exc).__name__, exc)
            self._queue_metrics = False
            return {}

    @property
    def global_step(self) -> int:
        return int(self.state.counters.get("global_step", 0))

    def _advance(self) -> int:
        self.state.counters["global_step"] = self.global_step + 1
        return self.global_step

    def evaluate(self, when: str) -> None:
        if not self.splits.held_out:
            return
        result = evaluate(self.roles, self.splits.held_out, self.config, self.redis_url)
        # The learner's own version: a run may start from a checkpoint that has one already.
        result |= {"when": when, "policy_version": int(self.roles.call_learner("policy_version_now"))}
        verdicts = result.pop("verdicts")
        # Per-problem verdicts, for paired comparisons of runs on the same problems (bench/learning.py).
        with (self.config.run_dir / EVALUATIONS_FILE).open("a") as out:
            out.write(json.dumps(result | {"verdicts": verdicts}) + "\n")
        self.state.evaluations.append(result)
        self.metrics.write(self.global_step, {"eval/held_out_pass@1": result["pass@1"]})
        log.info(
            "held-out pass@1 %s: %.3f (%d/%d)", when, result["pass@1"], result["passed"], result["problems"]
        )

    def checkpoint(self) -> None:
        self.state.samplers = [s.model_dump() for s in self.roles.sampler_states()]
        self.state.counters |= self.roles.call_learner("counters")

        def fill(directory: Path) -> None:
            self.roles.call_learner("save", directory)
            write_json(directory / "state.json", self.state)

        path = write_checkpoint_dir(self.config.run_dir, f"step-{self.global_step:06d}", fill)
        acked = self.roles.call_learner("acknowledge_settled")
        log.info(
            "checkpoint %s (policy version %d; %d results acknowledged)",
            path.name,
            self.state.policy_version,
            acked,
        )

    def phase_sft(self) -> None:
        remaining = self.config.phases.sft_steps - self.state.phase_step
        if remaining > 0 and self.splits.sft:
            stats = self.roles.call_learner("sft", remaining)
            self.state.policy_version = self.roles.call_learner("policy_version_now")
            self.state.counters["global_step"] = self.global_step + remaining
            self.metrics.write(self.global_step, stats)
        self._next_phase("critic")

    def phase_updates(self, phase: str, steps: int, method: str, broadcast: bool, following: str) -> None:
        remaining = steps - self.state.phase_step
        if remaining > 0:
            self.roles.broadcast()  # samplers start from the learner's weights
            run_updates(self.roles, method, remaining, self.config, self._on_update(phase), broadcast)
        self._next_phase(following)

    def _sandboxes(self) -> int:
        """Executor slots of the workers this run started (unknown for external workers)."""
        execution = self.config.execution
        if execution.external_workers:
            return 0
        return execution.executor_actors * execution.executor.workers

    def _on_update(self, phase: str) -> Any:
        def on_update(report: StepReport, broadcast_s: float, clock: PhaseClock) -> None:
            self.state.phase_step += 1
            self.state.policy_version = report.policy_version
            step = self._advance()
            values = report.stats | clock.rates(self.roles.num_samplers, self._sandboxes())
            values |= {"sync/weight_broadcast_s": broadcast_s, "learner/wait_s": report.wait_s}
            values |= {"learner/train_s": report.train_s, "learner/policy_version": report.policy_version}
            values |= self.queue_depths()
            self.metrics.write(
                step,
                {
                    f"{phase}/{k}" if k.startswith("loss/") and phase == "critic" else k: v
                    for k, v in values.items()
                },
            )
            if (
                self.config.eval.every
                and phase == "rl"
                and self.state.phase_step % self.config.eval.every == 0
            ):
                self.evaluate(f"rl step {self.state.phase_step}")
            if self.state.phase_step % self.config.checkpoint_every == 0:
                self.checkpoint()

        return on_update

    def _next_phase(self, phase: str) -> None:
        self.state.phase, self.state.phase_step = phase, 0
        self.checkpoint()


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    run_dir = config.run_dir
    run_id = _run_id(run_dir, resume)
    (run_dir / "config.yaml").write_text(dump_config(config) + "\n")
    checkpoint = latest_checkpoint(run_dir) if resume else None
    state = RunState()
    if checkpoint is not None:
        state = RunState.model_validate_json((checkpoint / "state.json").read_text())
        log.info(
            "resuming %s from %s: phase %s, step %d", run_dir, checkpoint.name, state.phase, state.phase_step
        )
    splits = load_splits(config.problems)
    with ExitStack() as stack:
        redis_url = _redis(config, run_dir, stack)
        names = streams.StreamNames(prefix=config.execution.prefix)
        channel = TrainStreams(names, run_id)
        _store_problems(redis_url, names, splits.all())
        roles = _make_roles(config, splits, redis_url, channel, checkpoint)
        stack.callback(roles.shutdown)
        if state.samplers:
            from actors.sampler import SamplerState

            roles.restore_samplers([SamplerState.model_validate(s) for s in state.samplers])
        run = _Run(config, roles, splits, state, redis_url, channel)
        stack.callback(run.metrics.close)
        stack.callback(run.client.close)
        if not state.evaluations:
            run.evaluate("before")
        if state.phase == "sft":
            run.phase_sft()
            run.evaluate("after sft")
        if state.phase == "critic":
            run.phase_updates("critic", config.phases.critic_steps, "critic_update", False, "rl")
        if state.phase == "rl":
            run.phase_updates("rl", config.phases.rl_steps, "rl_update", True, "done")
            run.evaluate("after rl")
            run.checkpoint()
    return TrainResult(run_dir, state)
