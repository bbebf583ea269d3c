"""The central learner: joins executed samples with their rollouts, scores them, trains the actor
with CodeRL's critic-weighted policy gradient plus cross-entropy on ground truth, trains the critic
on the observed outcomes, and hands out versioned weights.

A plain class with a typed interface (every method returns a model or a plain value): the run
driver calls it directly in one process, or through a typed proxy around a Ray actor
(driver/roles.py, driver/ray_roles.py); on a GPU when configured.
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

from actors.config import PolicyConfig, SamplingConfig
from actors.policy import Policy
from coderl.outcomes import OutcomeClass, Verdict
from coderl.problem import Problem
from coderl.rollouts import RolloutReader, TrainStreams
from coderl.wire import SampledProgram
from critic.model import Critic
from critic.training import critic_step, critic_token_values
from models.sequences import TokenBatch

from .actor_update import actor_step
from .batch import TrainBatch
from .buffer import SampleBuffer
from .checkpoint import load_rng, save_rng
from .config import CriticTrainingConfig, LearnerConfig, SFTConfig
from .micro import autocast, micro_slices
from .reports import LearnerStatus, SFTReport, StepReport
from .sft import SFTExample, make_optimizer, sft_examples, train_sft

__all__ = ["Learner"]

log = logging.getLogger(__name__)


class Learner:
    def __init__(
        self,
        config: LearnerConfig,
        policy: PolicyConfig,
        critic: CriticTrainingConfig,
        sft: SFTConfig,
        samples_per_group: int,
        sft_problems: Sequence[Problem],
        redis_url: str,
        channel: TrainStreams,
        checkpoint: Path | None = None,
        seed: int = 0,
        audit_file: Path | None = None,
    ) -> None:
        self.config, self.critic_config, self.sft_config = config, critic, sft
        self.audit_file = audit_file
        torch.manual_seed(seed)
        policy = policy.model_copy(update={"device": config.device})
        critic = critic.model_copy(update={"device": config.device})
        if checkpoint is not None:
            policy = policy.model_copy(update={"model": str(checkpoint / "policy")})
            critic = critic.model_copy(update={"model": str(checkpoint / "critic")})
        self.policy = Policy.load(policy)
        if config.activation_checkpointing:
            self.policy.model.gradient_checkpointing_enable()
        self.actor_optimizer = make_optimizer(self.policy.model.parameters(), config.optimizer)
        self.critic: Critic | None = None
        self.critic_optimizer: torch.optim.Optimizer | None = None
        if critic.enabled:
            self.critic = Critic.load(critic)
            self.critic.check_tokenizer(self.policy.tokenizer)
            self.critic_optimizer = make_optimizer(self.critic.parameters(), critic.optimizer)
        if checkpoint is not None:
            self._load_training_state(checkpoint)
        self.sft_problems = list(sft_problems)
        self.ground_truth: list[SFTExample] = sft_examples(self.policy, self.sft_problems)
        self.rng = random.Random(seed)
        self.exec_busy_s = 0.0
        self.executions_read = 0
        self.reader = RolloutReader(redis.Redis.from_url(redis_url, socket_timeout=60), channel)
        self.buffer = SampleBuffer(
            samples_per_group=samples_per_group,
            greedy_baseline=config.loss.baseline == "greedy",
            max_policy_lag=config.max_policy_lag,
            rewards=config.rewards,
            stale=config.stale,
            group_timeout_s=config.group_timeout_s,
        )

    # -- what the driver asks --------------------------------------------------------------------

    def status(self) -> LearnerStatus:
        return LearnerStatus(
            policy_version=self.policy.version,
            settled_samples=int(self.buffer.counts["settled/samples"]),
            executions=self.executions_read,
            exec_busy_s=self.exec_busy_s,
            counters={f"buffer/{k}": float(v) for k, v in self.buffer.counts.items()},
        )

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the policy's weights, for broadcasting."""
        return self.policy.cpu_weights()

    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        """Greedy programs of the current policy (held-out pass@1 comes from running them)."""
        params = SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=64)
        return self.policy.sample(problems, params, round_id="eval")

    # -- updates ---------------------------------------------------------------------------------

    def sft(self, steps: int) -> SFTReport:
        """``steps`` of the warm start on the SFT problems' ground truth."""
        every = self.sft_config.log_every
        losses: list[float] = []
        logged: list[tuple[int, float]] = []

        def on_step(step: int, loss: float) -> None:
            losses.append(loss)
            if step % every == 0 or step == steps:
                window = losses[-every:]
                logged.append((step, sum(window) / len(window)))

        report = train_sft(self.policy, self.sft_problems, self.sft_config, steps, on_step=on_step)
        return SFTReport(steps=steps, losses=logged, seconds=report.seconds, status=self.status())

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
        """L = rl_weight * L_rl + ce_weight * L_ce for the actor, then (critic.mode 'online') the
        critic on the same outcomes."""
        started = time.monotonic()
        self._audit(batch)
        batch_stats = self._batch_stats(batch)  # before the update: lags against the sampling version
        values = None
        if self.critic is not None:
            tokens = batch.sampled_tokens(self.policy.pad_id, self.policy.device)
            values = critic_token_values(self.critic, tokens, batch.classes())
        stats = actor_step(
            self.policy,
            self.actor_optimizer,
            batch,
            self._ground_truth_batch(),
            values,
            self.config.loss,
            self.config.optimizer.max_grad_norm,
            self.config.micro_batch_tokens,
            self.config.precision,
        )
        if self.critic_config.mode == "online":
            stats |= self._train_critic(batch)
        return self._report(batch, batch_stats | stats, wait_s, started)

    def save(self, directory: Path) -> None:
        """Write policy, critic, optimizers and RNG into ``directory`` (see learner/checkpoint.py)."""
        self.policy.save(directory / "policy")
        optimizers = {"actor": self.actor_optimizer.state_dict()}
        if self.critic is not None and self.critic_optimizer is not None:
            self.critic.save(directory / "critic")
            optimizers["critic"] = self.critic_optimizer.state_dict()
        torch.save(optimizers, directory / "optimizers.pt")
        save_rng(directory / "rng.pt")

    def acknowledge_settled(self) -> int:
        """After a checkpoint: acknowledge the results it covers; how many."""
        settled = self.buffer.take_settled()
        self.reader.ack(settled)
        return len(settled)

    # -- inside an update ------------------------------------------------------------------------

    def _collect(self) -> tuple[TrainBatch, float]:
        """Read results until a full batch of complete groups is ready (or fail after wait_s)."""
        started = time.monotonic()
        want = self.config.batch_size
        while True:
            if self.buffer.ready_samples() >= want:
                batch = self.buffer.take(self.policy.version, want)
                if batch.sampled:
                    return batch, time.monotonic() - started
            for delivery in self.reader.read(count=256, block_ms=200):
                self.exec_busy_s += delivery.report.exec_s
                self.executions_read += 1
                self.buffer.add(delivery)
            self.buffer.expire()
            if time.monotonic() - started > self.config.wait_s:
                raise TimeoutError(
                    f"no full batch of executed samples after {self.config.wait_s:g} s "
                    f"({self.buffer.ready_samples()} ready): are the samplers and executor workers running?"
                )

    def _ground_truth_batch(self) -> TokenBatch | None:
        size = min(self.config.ground_truth_batch_size, len(self.ground_truth))
        if self.config.loss.ce_weight == 0 or size == 0:
            return None
        chosen = self.rng.sample(self.ground_truth, size)
        return self.policy.batch([e.prompt_ids for e in chosen], [e.program_ids for e in chosen])

    def _train_critic(self, batch: TrainBatch) -> dict[str, float]:
        assert self.critic is not None and self.critic_optimizer is not None
        rows = batch.everything
        labels = batch.classes(rows)
        if self.critic.config.classes == "binary":
            labels = (labels == int(OutcomeClass.PASSED)).long()
        tokens = batch.tokens(self.policy.pad_id, self.policy.device)
        return critic_step(
            self.critic,
            self.critic_optimizer,
            tokens,
            labels,
            self.critic_config.optimizer.max_grad_norm,
            micro_slices(tokens, self.config.micro_batch_tokens),
            lambda: autocast(self.policy.device, self.config.precision),
        )

    def _batch_stats(self, batch: TrainBatch) -> dict[str, float]:
        """Rewards, the verdict mix (fractions of the sampled programs) and the policy lag."""
        count = len(batch.sampled)
        rewards = [s.reward for s in batch.sampled]
        lags = [self.policy.version - s.sample.policy_version for s in batch.sampled]
        stats = {
            "exec/mean_reward": sum(rewards) / count,
            "exec/pass_rate": sum(s.verdict == Verdict.PASSED for s in batch.sampled) / count,
            "staleness/policy_lag_mean": sum(lags) / count,
            "staleness/policy_lag_max": float(max(lags)),
        }
        for verdict in Verdict:
            if verdict != Verdict.SANDBOX_ERROR:
                share = sum(s.verdict == verdict for s in batch.sampled) / count
                stats[f"exec/verdict/{verdict.value}"] = share
        return stats

    def _report(
        self, batch: TrainBatch, stats: dict[str, float], wait_s: float, started: float
    ) -> StepReport:
        status = self.status()
        return StepReport(
            samples=len(batch.sampled),
            stats=stats | status.counters,
            wait_s=wait_s,
            train_s=time.monotonic() - started,
            status=status,
        )

    def _audit(self, batch: TrainBatch) -> None:
        """With an audit file: append the sample ids of this update to it."""
        if self.audit_file is None:
            return
        record = {
            "policy_version": self.policy.version,
            "trained": [s.sample.sample_id for s in batch.sampled],
            "greedy": [s.sample.sample_id for s in batch.greedy],
        }
        with self.audit_file.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def _load_training_state(self, checkpoint: Path) -> None:
        optimizers = torch.load(
            checkpoint / "optimizers.pt", map_location=self.policy.device, weights_only=False
        )
        self.actor_optimizer.load_state_dict(optimizers["actor"])
        if self.critic_optimizer is not None:
            self.critic_optimizer.load_state_dict(optimizers["critic"])
        load_rng(checkpoint / "rng.pt")
        log.info("resumed learner from %s at policy version %d", checkpoint, self.policy.version)
