"""One run while it goes: its roles, state, metrics, checkpoints and held-out evaluations."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from coderl.problem import Problem
from coderl.redis_client import DEFAULT_OUTAGE_S, open_client
from coderl.rollouts import TrainStreams, queue_depths
from executor.client import ClientConfig, RedisExecutionClient
from executor.engine import ExecutionItem
from learner.checkpoint import RunState, keep_milestone, write_checkpoint_dir, write_json
from learner.reports import StepReport

from .health import HealthWatcher
from .loop import PhaseClock
from .metrics import PHASE_KEY, MetricsSink
from .roles import LearnerProxy, Roles
from .splits import ProblemSplits
from .train_config import EvalConfig, TrainConfig

__all__ = ["EVALUATIONS_FILE", "Run", "evaluate", "read_evaluations"]

log = logging.getLogger(__name__)

EVALUATIONS_FILE = "evaluations.jsonl"
"""one line per held-out evaluation: when, policy_version, pass@1, passed, problems and the
verdict of each problem's greedy program"""


def evaluate(
    learner: LearnerProxy,
    problems: Sequence[Problem],
    config: EvalConfig,
    redis_url: str,
    prefix: str,
    redis_outage_s: float = DEFAULT_OUTAGE_S,
) -> dict[str, Any]:
    """Held-out pass@1 of the learner's policy with greedy decoding, judged by the executor workers."""
    chosen = list(problems[: config.problems])
    programs = learner.greedy_programs(chosen, config.max_new_tokens)
    # The batch client fails fast when Redis is not there at all: wait out a restart first.
    waiting = open_client(redis_url, redis_outage_s)
    try:
        waiting.ping()
    finally:
        waiting.close()
    client_config = ClientConfig(
        redis_url=redis_url, prefix=prefix, timeout_s=1800, redis_down_timeout_s=redis_outage_s
    )
    client = RedisExecutionClient(client_config)
    try:
        by_id = {p.task_id: p for p in chosen}
        results = client.execute_many(
            [ExecutionItem(by_id[s.task_id], s.program, "hidden") for s in programs]
        )
    finally:
        client.close()
    passed = sum(r.passed for r in results)
    return {
        "problems": len(chosen),
        "passed": passed,
        "pass@1": passed / max(1, len(chosen)),
        "verdicts": {s.task_id: r.verdict.value for s, r in zip(programs, results, strict=True)},
    }


def read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """The run's evaluation records, oldest first; none if it has not evaluated yet."""
    path = run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Run:
    def __init__(
        self,
        config: TrainConfig,
        roles: Roles,
        splits: ProblemSplits,
        state: RunState,
        redis_url: str,
        channel: TrainStreams,
    ) -> None:
        self.config, self.roles, self.splits, self.state = config, roles, splits, state
        self.redis_url, self.channel = redis_url, channel
        self.client = open_client(redis_url, config.execution.redis_outage_s, socket_timeout=10)
        # A resumed run goes on from its checkpoint's step: records a killed run wrote past it move aside.
        self.metrics = MetricsSink(config.run_dir, resume_step=self.global_step)
        self._queue_metrics = True
        self.health: HealthWatcher | None = None
        """the executors' watch (driver/health.py), once the run has started it"""

    @property
    def global_step(self) -> int:
        """Steps of every phase so far: the x axis of the metrics."""
        return int(self.state.counters.get("global_step", 0))

    def close(self) -> None:
        self.metrics.close()
        self.client.close()

    # -- phases ----------------------------------------------------------------------------------

    def start_phase(self, name: str, index: int) -> None:
        self.state.phase = name
        self.metrics.write(self.global_step, {PHASE_KEY: index})  # a boundary on the curves

    def finish_steps(self, phase: str, steps: int, policy_version: int) -> None:
        self.state.phase_steps[phase] = self.state.phase_steps.get(phase, 0) + steps
        self.state.counters["global_step"] = self.global_step + steps
        self.state.policy_version = policy_version

    def record_update(self, phase: str, report: StepReport, broadcast_s: float, clock: PhaseClock) -> None:
        self.finish_steps(phase, 1, report.status.policy_version)
        values = report.stats | clock.rates(self.roles.num_samplers, self._sandboxes())
        values |= {"sync/weight_broadcast_s": broadcast_s, "learner/wait_s": report.wait_s}
        values |= {"learner/train_s": report.train_s, "learner/policy_version": report.status.policy_version}
        values |= self.health.metrics() if self.health is not None else {}
        self.metrics.write(self.global_step, values | self._queue_depths())

    def maybe_checkpoint(self, phase_step: int) -> None:
        if phase_step % self.config.checkpoint_every == 0:
            self.checkpoint()

    # -- evaluation and checkpoints --------------------------------------------------------------

    def evaluate(self, when: str) -> None:
        if not self.splits.held_out:
            return
        execution = self.config.execution
        result = evaluate(
            self.roles.learner,
            self.splits.held_out,
            self.config.eval,
            self.redis_url,
            execution.prefix,
            execution.redis_outage_s,
        )
        # The learner's own version: a run may start from a checkpoint that has one already.
        result |= {"when": when, "policy_version": self.roles.learner.status().policy_version}
        verdicts = result.pop("verdicts")
        # Per-problem verdicts, for paired comparisons of runs on the same problems (bench/learning).
        with (self.config.run_dir / EVALUATIONS_FILE).open("a") as out:
            out.write(json.dumps(result | {"verdicts": verdicts}) + "\n")
        self.state.evaluations.append(result)
        self.metrics.write(self.global_step, {"eval/held_out_pass@1": result["pass@1"]})
        log.info(
            "held-out pass@1 %s: %.3f (%d/%d)", when, result["pass@1"], result["passed"], result["problems"]
        )

    def checkpoint(self, milestone: str | None = None) -> None:
        """A rolling checkpoint; ``milestone`` (``after-sft``, ...) keeps it also under that name."""
        self.state.samplers = [s.model_dump() for s in self.roles.sampler_states()]
        self.state.counters |= self.roles.learner.status().counters

        def fill(directory: Path) -> None:
            self.roles.learner.save(directory)
            write_json(directory / "state.json", self.state)

        name = f"step-{self.global_step:06d}"
        path = write_checkpoint_dir(self.config.run_dir, name, fill, keep=self.config.checkpoints_kept)
        if milestone is not None:
            keep_milestone(path, milestone)
        acked = self.roles.learner.acknowledge_settled()
        log.info(
            "checkpoint %s (policy version %d; %d results acknowledged)",
            path.name,
            self.state.policy_version,
            acked,
        )

    # -- metrics ---------------------------------------------------------------------------------

    def _sandboxes(self) -> int:
        """Executor slots of the workers this run started (unknown for external workers)."""
        execution = self.config.execution
        if execution.external_workers:
            return 0
        return execution.executor_actors * execution.worker.executor.workers

    def _queue_depths(self) -> dict[str, float]:
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
