"""The central learner: joins executed samples with their rollouts, trains the actor with CodeRL's
critic-weighted policy gradient plus cross-entropy on ground truth, trains the critic on the observed
outcomes, and hands out versioned weights.

A plain class: ``learner/ray_driver.py`` wraps it as a Ray actor (GPU when configured), the
in-process pipeline calls it directly.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import redis
import torch

from actors.config import SamplingConfig
from actors.policy import Policy
from coderl.outcomes import OutcomeClass
from coderl.problem import Problem
from coderl.rollouts import RolloutReader, TrainStreams
from coderl.wire import SampledProgram, WireMessage
from critic.model import Critic
from critic.training import CriticExample, critic_step, critic_token_values
from driver.train_config import TrainConfig

from .actor_update import actor_step, sample_batch
from .buffer import SampleBuffer, TrainBatch
from .checkpoint import load_rng, save_rng
from .sft import SFTExample, make_optimizer, sft_examples, train_sft

__all__ = ["AUDIT_FILE", "Learner", "StepReport"]

AUDIT_FILE = "audit.jsonl"

log = logging.getLogger(__name__)


class StepReport(WireMessage):
    """One update, as returned through Ray to the driver."""

    policy_version: int
    samples: int
    settled_total: int
    """sampled programs (greedy decodes excluded) trained on or dropped since the learner started"""
    stats: dict[str, float]
    wait_s: float
    """time spent waiting for executed samples"""
    train_s: float
    exec_busy_total_s: float = 0.0
    """sandbox seconds of every result read since the learner started (executors' busy time)"""
    executions_total: int = 0
    """results read since the learner started, greedy decodes included"""


class Learner:
    def __init__(
        self,
        config: TrainConfig,
        sft_problems: Sequence[Problem],
        redis_url: str,
        channel: TrainStreams,
        checkpoint: Path | None = None,
    ) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        policy_config = config.policy.model_copy(update={"device": config.learner.device})
        critic_config = config.critic.model_copy(update={"device": config.learner.device})
        if checkpoint is not None:
            policy_config = policy_config.model_copy(update={"model": str(checkpoint / "policy")})
            critic_config = critic_config.model_copy(update={"model": str(checkpoint / "critic")})
        self.policy = Policy.load(policy_config)
        self.critic = Critic.load(critic_config)
        self.critic.check_tokenizer(self.policy.tokenizer)
        self.actor_optimizer = make_optimizer(self.policy.model.parameters(), config.learner.optimizer)
        self.critic_optimizer = make_optimizer(self.critic.parameters(), config.learner.critic_optimizer)
        if checkpoint is not None:
            self._load_training_state(checkpoint)
        self.sft_problems = list(sft_problems)
        self.ground_truth: list[SFTExample] = sft_examples(self.policy, self.sft_problems)
        self.rng = random.Random(config.seed)
        self.exec_busy_s = 0.0
        self.executions_read = 0
        self.reader = RolloutReader(redis.Redis.from_url(redis_url, socket_timeout=60), channel)
        self.buffer = SampleBuffer(
            samples_per_group=config.sampler.sampling.n,
            greedy_baseline=config.greedy_baseline,
            max_policy_lag=config.learner.max_policy_lag,
            stale=config.learner.stale,
            group_timeout_s=config.learner.group_timeout_s,
        )

    # -- weights -------------------------------------------------------------------------------------

    @property
    def policy_version(self) -> int:
        return self.policy.version

    def policy_version_now(self) -> int:
        """The version, as a method (Ray actors expose methods, not properties)."""
        return self.policy.version

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the policy's weights, for broadcasting."""
        return self.policy.cpu_weights()

    # -- phases --------------------------------------------------------------------------------------

    def sft(self, steps: int) -> dict[str, float]:
        """The warm start on the SFT problems' ground truth; returns the first and last losses."""
        sft = self.config.sft.model_copy(update={"steps": steps})
        report = train_sft(self.policy, self.sft_problems, sft)
        window = max(1, min(20, len(report.losses) // 4))
        return {
            "loss/sft_first": sum(report.losses[:window]) / window,
            "loss/sft_last": sum(report.losses[-window:]) / window,
            "sft/seconds": report.seconds,
        }

    def critic_update(self) -> StepReport:
        """Critic pre-training: one critic update on the next batch of executed samples."""
        batch, wait_s = self._collect()
        started = time.monotonic()
        self._audit(batch)
        stats = self._batch_stats(batch) | self._train_critic(batch)
        return self._report(batch, stats, wait_s, started)

    def rl_update(self) -> StepReport:
        """CodeRL on the next batch of executed samples (see ``train_on``)."""
        batch, wait_s = self._collect()
        return self.train_on(batch, wait_s)

    def train_on(self, batch: TrainBatch, wait_s: float = 0.0) -> StepReport:
        """L = rl_weight * L_rl + ce_weight * L_ce for the actor, then the critic on the same outcomes."""
        started = time.monotonic()
        self._audit(batch)
        batch_stats = self._batch_stats(batch)  # before the update: lags against the sampling version
        values = None
        if self.config.learner.loss.use_critic:
            classes = torch.tensor([s.outcome_class for s in batch.samples])
            values = critic_token_values(self.critic, sample_batch(self.policy, batch.samples), classes)
        ground_truth = self._ground_truth_batch()
        stats = actor_step(
            self.policy,
            self.actor_optimizer,
            batch.samples,
            ground_truth,
            values,
            self.config.learner.loss,
            self.config.learner.optimizer.max_grad_norm,
        )
        if self.config.learner.train_critic:
            stats |= self._train_critic(batch)
        return self._report(batch, batch_stats | stats, wait_s, started)

    # -- steps ---------------------------------------------------------------------------------------

    def _collect(self) -> tuple[TrainBatch, float]:
        """Read results until a full batch of complete groups is ready (or fail after wait_s)."""
        started = time.monotonic()
        want = self.config.learner.batch_size
        while True:
            if self.buffer.ready_samples() >= want:
                batch = self.buffer.take(self.policy.version, want)
                if batch.samples:
                    return batch, time.monotonic() - started
            for delivery in self.reader.read(count=256, block_ms=200):
                self.exec_busy_s += delivery.report.exec_s
                self.executions_read += 1
                self.buffer.add(delivery)
            self.buffer.expire()
            if time.monotonic() - started > self.config.learner.wait_s:
                raise TimeoutError(
                    f"no full batch of executed samples after {self.config.learner.wait_s:g} s "
                    f"({self.buffer.ready_samples()} ready): are the samplers and executor workers running?"
                )

    def _ground_truth_batch(self) -> list[SFTExample]:
        size = min(self.config.learner.ground_truth_batch_size, len(self.ground_truth))
        if self.config.learner.loss.ce_weight == 0 or size == 0:
            return []
        return self.rng.sample(self.ground_truth, size)

    def _train_critic(self, batch: TrainBatch) -> dict[str, float]:
        binary = self.critic.config.classes == "binary"
        examples = [
            CriticExample(
                s.sample.prompt_token_ids,
                s.sample.token_ids,
                int(s.outcome_class == OutcomeClass.PASSED) if binary else s.outcome_class,
            )
            for s in [*batch.samples, *batch.greedy]
        ]
        return critic_step(
            self.critic, self.critic_optimizer, examples, self.config.learner.optimizer.max_grad_norm
        )

    def _batch_stats(self, batch: TrainBatch) -> dict[str, float]:
        rewards = [s.reward for s in batch.samples]
        passed = [s.outcome_class == OutcomeClass.PASSED for s in batch.samples]
        lags = [self.policy.version - s.sample.policy_version for s in batch.samples]
        return {
            "exec/mean_reward": sum(rewards) / len(rewards),
            "exec/pass_rate": sum(passed) / len(passed),
            "staleness/policy_lag_mean": sum(lags) / len(lags),
            "staleness/policy_lag_max": float(max(lags)),
        }

    def _report(
        self, batch: TrainBatch, stats: dict[str, float], wait_s: float, started: float
    ) -> StepReport:
        return StepReport(
            policy_version=self.policy.version,
            samples=len(batch.samples),
            settled_total=self.buffer.counts["settled/samples"],
            stats=stats | self.counters(),
            wait_s=wait_s,
            train_s=time.monotonic() - started,
            exec_busy_total_s=self.exec_busy_s,
            executions_total=self.executions_read,
        )

    def _audit(self, batch: TrainBatch) -> None:
        """With learner.audit: append the sample ids of this update to run_dir/audit.jsonl."""
        if not self.config.learner.audit:
            return
        record = {
            "policy_version": self.policy.version,
            "trained": [s.sample.sample_id for s in batch.samples],
            "greedy": [s.sample.sample_id for s in batch.greedy],
        }
        with (self.config.run_dir / AUDIT_FILE).open("a") as out:
            out.write(json.dumps(record) + "\n")

    def settled_samples(self) -> int:
        """Sampled programs trained on or dropped so far (the driver's admission control counts them)."""
        return int(self.buffer.counts["settled/samples"])

    def exec_busy_seconds(self) -> float:
        """Sandbox seconds of the results read so far (the driver derives executor idle time)."""
        return self.exec_busy_s

    def executions(self) -> int:
        """Results read so far, greedy decodes included (the driver derives executions/s)."""
        return self.executions_read

    def counters(self) -> dict[str, float]:
        return {f"buffer/{k}": float(v) for k, v in self.buffer.counts.items()}

    # -- checkpoint ----------------------------------------------------------------------------------

    def evaluate(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        """Greedy programs of the current policy (held-out pass@1 comes from running them)."""
        params = SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=64)
        return self.policy.sample(problems, params, round_id="eval")

    def save(self, directory: Path) -> None:
        """Write policy, critic, optimizers and RNG into ``directory`` (see learner/checkpoint.py)."""
        self.policy.save(directory / "policy")
        self.critic.save(directory / "critic")
        optimizers = {
            "actor": self.actor_optimizer.state_dict(),
            "critic": self.critic_optimizer.state_dict(),
        }
        torch.save(optimizers, directory / "optimizers.pt")
        save_rng(directory / "rng.pt")

    def acknowledge_settled(self) -> int:
        """After a checkpoint: acknowledge the results it covers; how many."""
        settled = self.buffer.take_settled()
        self.reader.ack(settled)
        return len(settled)

    def _load_training_state(self, checkpoint: Path) -> None:
        optimizers = torch.load(
            checkpoint / "optimizers.pt", map_location=self.policy.device, weights_only=False
        )
        self.actor_optimizer.load_state_dict(optimizers["actor"])
        self.critic_optimizer.load_state_dict(optimizers["critic"])
        load_rng(checkpoint / "rng.pt")
        log.info("resumed learner from %s at policy version %d", checkpoint, self.policy.version)
