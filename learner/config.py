"""Learner configuration (pydantic; defaults defined once here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.config import PolicyConfig, RayResources
from coderl.outcomes import RewardConfig
from critic.config import CriticConfig

Normalization = Literal["sum", "token_mean", "sequence_mean"]
"""how a policy-gradient loss is reduced over tokens (learner/losses.py)"""

Schedule = Literal["constant", "linear", "cosine"]
"""learning-rate schedule after warm-up (learner/schedules.py)"""


class OptimizerConfig(BaseModel):
    """AdamW with gradient clipping; a constant learning rate by default, as CodeRL trains."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    lr: float = Field(default=2e-5, gt=0)
    """CodeRL: 2e-5 for CodeT5-large; tiny models want about 1e-3"""
    weight_decay: float = Field(default=0.05, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Schedule = "constant"
    """constant, or linear / cosine decay to 0 over the run's steps (SFT only for now)"""
    warmup_steps: int = Field(default=0, ge=0)
    """steps of linear warm-up from 0 before the schedule (SFT only for now)"""


class SFTConfig(BaseModel):
    """Supervised warm start: cross-entropy on ground-truth programs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    batch_size: int = Field(default=8, ge=1)
    """(prompt, program) pairs per optimizer step"""
    max_solutions_per_problem: int | None = Field(default=None, ge=1)
    """None uses every ground-truth program (APPS has about 23 per problem)"""
    log_every: int = Field(default=50, ge=1)
    seed: int = 0
    """orders the examples"""
    objective: Literal["program", "ntp", "program+ntp"] = "program"
    """program: problem -> ground-truth program (CodeRL's warm start); ntp: next-token prediction
    on code split at a random pivot, encoder-decoder policies only (learner/ntp.py); program+ntp:
    both sets of examples, shuffled together"""
    ntp_paths: list[str] = Field(default_factory=list)
    """files or directories of Python files for the NTP objective; empty: the ground-truth programs"""
    ntp_pivot_range: tuple[float, float] = (0.1, 0.9)
    """the pivot is drawn uniformly in this share of each sample (CodeT5's NTP pretraining)"""

    @model_validator(mode="after")
    def _pivot_range(self) -> SFTConfig:
        low, high = self.ntp_pivot_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"sft.ntp_pivot_range needs 0 <= low <= high <= 1, got {self.ntp_pivot_range}")
        return self


class SFTCommandConfig(SFTConfig):
    """``coderl sft``: the warm start, its length and the policy it starts from (``coderl train``
    takes the length from ``phases.sft_steps``)."""

    steps: int = Field(default=1000, ge=1)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)


class ActorLossConfig(BaseModel):
    """How the RL loss is formed; the defaults are CodeRL's, the alternatives are off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    normalization: Normalization = "sum"
    """sum: the paper's sum over tokens; token_mean: the official code; sequence_mean: per program"""
    baseline: Literal["greedy", "group_mean", "none"] = "greedy"
    """greedy: reward of the greedy decode of the same problem (CodeRL); group_mean: leave-one-out
    mean of the problem's other samples, no greedy decode; none: absolute returns"""
    importance: Literal["none", "truncated", "ppo_clip"] = "none"
    """correction for samples from an older policy version"""
    max_ratio: float = Field(default=1.0, gt=0)
    """truncated: the cap on the importance ratio"""
    clip_epsilon: float = Field(default=0.2, gt=0, lt=1)
    """ppo_clip: the clipping range"""
    ce_weight: float = Field(default=1.0, ge=0)
    """L = L_rl + ce_weight * L_ce on ground truth (CodeRL mixes them with equal weights)"""
    rl_weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _some_loss(self) -> ActorLossConfig:
        if self.ce_weight == 0 and self.rl_weight == 0:
            raise ValueError("ce_weight and rl_weight are both 0: set at least one above 0")
        return self


class LearnerConfig(BaseModel):
    """The central learner of the RL phase."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    batch_size: int = Field(default=32, ge=1)
    """sampled programs per update (whole groups: a problem's samples are never split)"""
    ground_truth_batch_size: int = Field(default=8, ge=0)
    """ground-truth programs per update for the cross-entropy term (0: none)"""
    max_policy_lag: int = Field(default=2, ge=0)
    """samples from more than this many versions ago are dropped or importance-corrected"""
    stale: Literal["drop", "correct"] = "drop"
    """what to do with samples over max_policy_lag; correct needs loss.importance set"""
    loss: ActorLossConfig = Field(default_factory=ActorLossConfig)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    """reward of each CodeRL outcome class; the learner scores every verdict with these (executors
    return verdicts only)"""
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-4))
    micro_batch_tokens: int = Field(default=0, ge=0)
    """padded tokens (rows x longest prompt + response) per forward/backward pass; a batch is split
    into micro-batches within it and their gradients accumulated (the same update as one pass);
    0: the whole batch in one pass"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: forward passes under bf16 autocast, weights and optimizer states kept in fp32"""
    activation_checkpointing: bool = False
    """recompute activations in the backward pass instead of keeping them (less memory, ~30% more
    compute)"""
    world_size: int = Field(default=1, ge=1)
    """learner ranks (Ray actors, ``num_gpus`` each) training data-parallel: each takes its share of
    every batch, gradients are summed across them (NCCL on GPUs, gloo on CPU); rank 0 reads the
    data, writes checkpoints and sends the weights. Above 1 needs use_ray"""
    num_gpus: float = Field(default=0.0, ge=0)
    """GPUs of each learner rank"""
    resources: RayResources = Field(default_factory=dict)
    """custom Ray resources per learner rank, e.g. {learner_node = 1}: the ranks start only on nodes
    started with them (`ray start --resources '{"learner_node": 1}'`); ignored without Ray"""
    device: str = "auto"
    wait_s: float = Field(default=300.0, gt=0)
    """an update waits at most this long for a full batch before the run fails"""
    group_timeout_s: float = Field(default=600.0, gt=0)
    """a group still incomplete after this long (a result lost) is dropped"""
    audit: bool = False
    """log the sample ids of every update to run_dir/audit.jsonl (tests, debugging)"""

    @model_validator(mode="after")
    def _constant_rl_learning_rate(self) -> LearnerConfig:
        _constant("learner.optimizer", self.optimizer)
        return self

    @model_validator(mode="after")
    def _correction_needs_importance(self) -> LearnerConfig:
        if self.stale == "correct" and self.loss.importance == "none":
            raise ValueError("stale='correct' needs loss.importance set to 'truncated' or 'ppo_clip'")
        return self


def _constant(name: str, optimizer: OptimizerConfig) -> None:
    if optimizer.schedule != "constant" or optimizer.warmup_steps:
        raise ValueError(
            f"{name}: schedules and warm-up apply to the SFT optimizer only; "
            "set schedule='constant' and warmup_steps=0"
        )


class CriticTrainingConfig(CriticConfig):
    """The critic of a training run: its model (critic/config.py), how the run uses it, and its
    optimizer."""

    mode: Literal["online", "frozen", "off"] = "online"
    """online: pre-trained for phases.critic_steps, then updated on every RL batch, and weighting
    each RL token by q_hat(w_t); frozen: the same, but not updated during RL (CodeRL); off: no
    critic at all (no critic phase, every token weighted 1; phases.critic_steps must be 0)"""
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """its own learning rate and gradient clipping (CodeRL: 2e-5 for CodeT5-base)"""

    @model_validator(mode="after")
    def _constant_learning_rate(self) -> CriticTrainingConfig:
        _constant("critic.optimizer", self.optimizer)
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


class PhasesConfig(BaseModel):
    """sft warm start -> critic pre-training on the warm policy's samples -> rl. 0 steps skips one."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    sft_steps: int = Field(default=1600, ge=0)
    critic_steps: int = Field(default=20, ge=0)
    """critic-only updates on executed samples of the warm policy before RL (critic.mode 'off':
    must be 0)"""
    rl_steps: int = Field(default=100, ge=0)
