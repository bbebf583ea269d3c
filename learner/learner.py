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

import torch

from actors.config import PolicyConfig, SamplingConfig, SyncConfig
from actors.policy import Policy
from coderl.outcomes import Verdict
from coderl.problem import Problem
from coderl.redis_client import DEFAULT_OUTAGE_S, open_client
from coderl.rollouts import RolloutReader, TrainStreams
from coderl.wire import SampledProgram
from critic.model import Critic, critic_labels
from critic.training import critic_step, critic_token_values
from models.loading import peak_memory_bytes
from models.sequences import TokenBatch, take_rows
from models.weight_group import Backend, GroupAddress, SyncHost
from models.weight_sync import PackedWeights

from .actor_update import actor_step
from .batch import TrainBatch
from .buffer import SampleBuffer
from .checkpoint import load_rng, save_rng
from .config import CriticTrainingConfig, LearnerConfig, SFTConfig
from .distributed import DataParallel
from .micro import autocast, micro_slices_of
from .reports import LearnerStatus, LearnerTotals, SFTReport, StepReport
from .sft import SFTExample, SFTTrainer, make_optimizer, sft_examples, warm_start_examples

__all__ = ["Learner"]

log = logging.getLogger(__name__)

LEARNER_TOTALS = "learner.json"
"""in a checkpoint: the learner's run-wide counts (buffer counters, executions read)"""


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
        rank: int = 0,
        redis_outage_s: float = DEFAULT_OUTAGE_S,
    ) -> None:
        self.config, self.critic_config, self.sft_config = config, critic, sft
        self.rank = rank
        self.dp = DataParallel.single()
        """the learner ranks' group once ``join_data_parallel`` ran (learner.world_size > 1)"""
        self.audit_file = audit_file
        torch.manual_seed(seed)
        policy = policy.model_copy(update={"device": config.device})
        critic = critic.model_copy(update={"device": config.device})
        if checkpoint is not None:
            policy = policy.model_copy(update={"model": str(checkpoint / "policy")})
            critic = critic.model_copy(update={"model": str(checkpoint / "critic")})
        self.policy = Policy.load(policy)
        if config.activation_checkpointing:
            self.policy.model.activation_checkpointing_enable()
        self.actor_optimizer = make_optimizer(self.policy.model.parameters(), config.optimizer)
        self.critic: Critic | None = None
        self.critic_optimizer: torch.optim.Optimizer | None = None
        if critic.enabled:
            self.critic = Critic.load(critic)
            self.critic.check_tokenizer(self.policy.tokenizer)
            if config.activation_checkpointing:
                self.critic.backbone.activation_checkpointing_enable()
            self.critic_optimizer = make_optimizer(self.critic.parameters(), critic.optimizer)
        self._saved_sft_state: dict[str, object] | None = None
        self.sft_problems = list(sft_problems)
        self.ground_truth: list[SFTExample] = sft_examples(self.policy, self.sft_problems)
        self.rng = random.Random(seed)
        self.sft_trainer: SFTTrainer | None = None
        self.exec_busy_s = 0.0
        self.executions_read = 0
        self.redis_url, self.channel, self.redis_outage_s = redis_url, channel, redis_outage_s
        self._reader: RolloutReader | None = None
        self.buffer = SampleBuffer(
            samples_per_group=samples_per_group,
            greedy_baseline=config.loss.baseline == "greedy",
            max_policy_lag=config.max_policy_lag,
            rewards=config.rewards,
            stale=config.stale,
            group_timeout_s=config.group_timeout_s,
        )
        if checkpoint is not None:
            self._load_training_state(checkpoint)

    def join_data_parallel(self, address: str) -> int:
        """Join the other learner ranks at ``address`` (rank 0's ``host:port``; every rank calls
        this at once) and start from rank 0's weights; returns this rank."""
        world_size = self.config.world_size
        timeout_s = self.config.wait_s + 600.0  # ranks wait in a collective while rank 0 waits for data
        self.dp = DataParallel.join(address, self.rank, world_size, self.policy.device, timeout_s)
        self.dp.broadcast_parameters(self.policy.model)
        if self.critic is not None:
            self.dp.broadcast_parameters(self.critic)
        return self.rank

    @property
    def reader(self) -> RolloutReader:
        """The executed samples, read by rank 0 only; connects on first use."""
        if self._reader is None:
            client = open_client(self.redis_url, self.redis_outage_s)  # retries through outages
            self._reader = RolloutReader(client, self.channel)
        return self._reader

    # -- what the driver asks --------------------------------------------------------------------

    def status(self) -> LearnerStatus:
        return LearnerStatus(
            policy_version=self.policy.version,
            settled_samples=int(self.buffer.counts["settled/samples"]),
            executions=self.executions_read,
            exec_busy_s=self.exec_busy_s,
            counters={f"buffer/{k}": float(v) for k, v in self.buffer.counts.items()},
        )

    def weights(self) -> PackedWeights:
        """The policy's weights packed for broadcasting (models/weight_sync.py), with their version."""
        return self.policy.packed_weights()

    weight_sync: SyncHost | None = None
    """rank 0's side of the collective weight sync with the samplers (sync.method='collective')"""

    def open_sync_group(self, host: str, size: int, backend: Backend, config: SyncConfig) -> GroupAddress:
        """A new weight-sync group with the samplers, this learner its rank 0; its address."""
        self.close_sync_group()
        bucket_bytes = int(config.bucket_mb * 2**20)
        self.weight_sync = SyncHost(host, size, backend, bucket_bytes, config.timeout_s)
        return self.weight_sync.address

    def join_sync_group(self) -> None:
        assert self.weight_sync is not None, "open_sync_group first"
        self.weight_sync.join(self.policy.model)  # blocks until every sampler has joined too

    def send_weights(self) -> int:
        assert self.weight_sync is not None, "open_sync_group first"
        self.weight_sync.send(self.policy.version)
        return self.policy.version

    def close_sync_group(self) -> None:
        if self.weight_sync is not None:
            self.weight_sync.close()
        self.weight_sync = None

    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        """Greedy programs of the current policy (held-out pass@1 comes from running them)."""
        params = SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=64)
        return self.policy.sample(problems, params, round_id="eval")

    # -- updates ---------------------------------------------------------------------------------

    def sft(self, steps: int, total_steps: int | None = None) -> SFTReport:
        """``steps`` more steps of the warm start on the SFT problems' ground truth, of a phase of
        ``total_steps`` (the learning-rate schedule's length; default ``steps``). The optimizer,
        schedule and data order carry over between calls and into checkpoints."""
        trainer = self._sft_trainer(total_steps or steps)
        first = trainer.steps_done
        report = trainer.train(steps)
        if trainer.steps_done >= trainer.total_steps:  # the phase is over: free its AdamW states
            self.sft_trainer, self._saved_sft_state = None, None
        logged = [(step - first, loss) for step, loss in report.logged]  # steps of this call
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
        if self.critic is not None:  # for this rank's rows only
            rows = self.dp.rows(len(batch.sampled))
            tokens = take_rows(batch.sampled_tokens(self.policy.pad_id, self.policy.device), rows)
            labels = critic_labels(batch.classes()[rows], self.critic.config.classes)
            values = critic_token_values(self.critic, tokens, labels)
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
            self.dp,
        )
        if self.critic_config.mode == "online":
            stats |= self._train_critic(batch)
        if self.dp.active:
            stats["learner/rank_weight_spread"] = self.dp.weight_spread(self.policy.model)
        return self._report(batch, batch_stats | stats, wait_s, started)

    def save(self, directory: Path) -> None:
        """Write policy, critic, optimizers and RNG into ``directory`` (see learner/checkpoint.py)."""
        self.policy.save(directory / "policy")
        optimizers = {"actor": self.actor_optimizer.state_dict()}
        if self.critic is not None and self.critic_optimizer is not None:
            self.critic.save(directory / "critic")
            optimizers["critic"] = self.critic_optimizer.state_dict()
        if self.sft_trainer is not None:
            optimizers["sft"] = self.sft_trainer.state_dict()
        optimizers["ground_truth_rng"] = self.rng.getstate()
        torch.save(optimizers, directory / "optimizers.pt")
        save_rng(directory / "rng.pt")
        totals = LearnerTotals(
            counters=dict(self.buffer.counts), executions=self.executions_read, exec_busy_s=self.exec_busy_s
        )
        (directory / LEARNER_TOTALS).write_text(totals.model_dump_json())

    def acknowledge_settled(self) -> int:
        """After a checkpoint: acknowledge the results it covers; how many."""
        settled = self.buffer.take_settled()
        self.reader.ack(settled)
        return len(settled)

    # -- inside an update ------------------------------------------------------------------------

    def _collect(self) -> tuple[TrainBatch, float]:
        """The next batch: rank 0 reads it (``_read_batch``) and hands it to the other ranks."""
        if not self.dp.active:
            return self._read_batch()
        if not self.dp.is_main:
            received = self.dp.broadcast_object(None)
            if isinstance(received, BaseException):
                raise received
            return received  # type: ignore[no-any-return]
        try:
            found = self._read_batch()
        except TimeoutError as exc:
            self.dp.broadcast_object(exc)  # the other ranks fail with it, rather than hang
            raise
        return self.dp.broadcast_object(found)

    def _read_batch(self) -> tuple[TrainBatch, float]:
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
        """The update's cross-entropy batch, drawn by rank 0 (the same on every rank)."""
        size = min(self.config.ground_truth_batch_size, len(self.ground_truth))
        if self.config.loss.ce_weight == 0 or size == 0:
            return None
        drawn = self.rng.sample(range(len(self.ground_truth)), size) if self.dp.is_main else None
        chosen = [self.ground_truth[i] for i in self.dp.broadcast_object(drawn)]
        return self.policy.batch([e.prompt_ids for e in chosen], [e.program_ids for e in chosen])

    def _train_critic(self, batch: TrainBatch) -> dict[str, float]:
        assert self.critic is not None and self.critic_optimizer is not None
        rows = batch.everything
        labels = critic_labels(batch.classes(rows), self.critic.config.classes)
        tokens = batch.tokens(self.policy.pad_id, self.policy.device)
        stats = critic_step(
            self.critic,
            self.critic_optimizer,
            tokens,
            labels,
            self.critic_config.optimizer.max_grad_norm,
            micro_slices_of(tokens, self.dp.rows(len(rows)), self.config.micro_batch_tokens),
            lambda: autocast(self.policy.device, self.config.precision),
            self.dp.sum_gradients,
        )
        return dict(zip(stats, self.dp.sum_floats(list(stats.values())), strict=True))  # parts add up

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
        stats["learner/peak_memory_gib"] = peak_memory_bytes(self.policy.device) / 2**30
        return StepReport(
            samples=len(batch.sampled),
            stats=stats | status.counters,
            wait_s=wait_s,
            train_s=time.monotonic() - started,
            status=status,
        )

    def _audit(self, batch: TrainBatch) -> None:
        """With an audit file: append the sample ids of this update to it."""
        if self.audit_file is None or not self.dp.is_main:
            return
        record = {
            "policy_version": self.policy.version,
            "trained": [s.sample.sample_id for s in batch.sampled],
            "greedy": [s.sample.sample_id for s in batch.greedy],
        }
        with self.audit_file.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def _sft_trainer(self, total_steps: int) -> SFTTrainer:
        if self.sft_trainer is None:
            examples = warm_start_examples(self.policy, self.sft_problems, self.ground_truth, self.sft_config)
            self.sft_trainer = SFTTrainer(
                self.policy,
                examples,
                self.sft_config,
                total_steps,
                self.config.micro_batch_tokens,
                self.config.precision,
                self.dp,
            )
            if self._saved_sft_state is not None:  # resuming inside the warm start
                self.sft_trainer.load_state_dict(self._saved_sft_state)
                log.info("warm start resumed after %d steps", self.sft_trainer.steps_done)
        return self.sft_trainer

    def _load_training_state(self, checkpoint: Path) -> None:
        optimizers = torch.load(
            checkpoint / "optimizers.pt", map_location=self.policy.device, weights_only=False
        )
        self.actor_optimizer.load_state_dict(optimizers["actor"])
        if self.critic_optimizer is not None:
            self.critic_optimizer.load_state_dict(optimizers["critic"])
        self._saved_sft_state = optimizers.get("sft")
        if "ground_truth_rng" in optimizers:  # the same cross-entropy batches as a run never stopped
            self.rng.setstate(optimizers["ground_truth_rng"])
        load_rng(checkpoint / "rng.pt")
        if (checkpoint / LEARNER_TOTALS).is_file():  # run-wide counts go on from the checkpoint's
            totals = LearnerTotals.model_validate_json((checkpoint / LEARNER_TOTALS).read_text())
            self.buffer.counts.update(totals.counters)
            self.executions_read, self.exec_busy_s = totals.executions, totals.exec_busy_s
        log.info("resumed learner from %s at policy version %d", checkpoint, self.policy.version)
