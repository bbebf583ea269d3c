"""One actor update: CodeRL's critic-weighted policy gradient on executed samples plus cross-entropy
on ground truth, with the options of ``ActorLossConfig``.

The step trains on the exact sampled token ids (``SampledProgram.token_ids``), never on a
re-tokenisation of the decoded program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actors.policy import Policy
from coderl.wire import SampledProgram
from models.sequences import TokenBatch, response_logprobs

from .config import ActorLossConfig
from .losses import (
    cross_entropy_loss,
    group_mean_baseline,
    policy_gradient_loss,
    ppo_clip_policy_loss,
    token_advantages,
    truncated_is_policy_loss,
)
from .sft import SFTExample

__all__ = ["ScoredSample", "actor_step", "baselines_for", "behaviour_logprobs", "rl_loss", "sample_batch"]


@dataclass(frozen=True)
class ScoredSample:
    """A sampled program joined with its execution result."""

    sample: SampledProgram
    reward: float
    outcome_class: int
    """CodeRL class of the verdict (coderl.outcomes.OutcomeClass)"""
    greedy_reward: float | None = None
    """reward of the greedy decode of the same problem, for the ``greedy`` baseline"""


def sample_batch(policy: Policy, scored: Sequence[ScoredSample]) -> TokenBatch:
    return policy.batch([s.sample.prompt_token_ids for s in scored], [s.sample.token_ids for s in scored])


def baselines_for(scored: Sequence[ScoredSample], config: ActorLossConfig) -> torch.Tensor:
    """r(W^b) per sample: the greedy decode's reward, the group mean of the problem, or 0."""
    rewards = torch.tensor([s.reward for s in scored])
    if config.baseline == "none":
        return torch.zeros_like(rewards)
    if config.baseline == "group_mean":
        task_index: dict[str, int] = {}
        groups = torch.tensor([task_index.setdefault(s.sample.task_id, len(task_index)) for s in scored])
        return group_mean_baseline(rewards, groups)
    missing = [s.sample.sample_id for s in scored if s.greedy_reward is None]
    if missing:
        raise ValueError(f"baseline 'greedy' needs the greedy decode's reward; missing for {missing[:3]}")
    return torch.tensor([float(s.greedy_reward) for s in scored])  # type: ignore[arg-type]


def rl_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: ActorLossConfig,
) -> torch.Tensor:
    """The configured policy-gradient loss. Shape: (b, t) x4 -> ()."""
    if config.importance == "truncated":
        return truncated_is_policy_loss(
            logprobs, behaviour_logprobs, advantages, mask, config.normalization, config.max_ratio
        )
    if config.importance == "ppo_clip":
        return ppo_clip_policy_loss(
            logprobs, behaviour_logprobs, advantages, mask, config.normalization, config.clip_epsilon
        )
    return policy_gradient_loss(logprobs, advantages, mask, config.normalization)


def actor_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    scored: Sequence[ScoredSample],
    ground_truth: Sequence[SFTExample],
    token_values: torch.Tensor | None,
    config: ActorLossConfig,
    max_grad_norm: float,
) -> dict[str, float]:
    """L = rl_weight * L_rl + ce_weight * L_ce; one optimizer step; the policy version advances.

    ``token_values`` is the critic's q_hat for ``sample_batch(policy, scored)``, shape (b, t), or
    None when ``config.use_critic`` is off.
    """
    if config.use_critic and token_values is None and scored:
        raise ValueError("use_critic is on but no token values were given: pass the critic's q_hat")
    policy.model.train()
    stats: dict[str, float] = {}
    loss = torch.zeros((), device=policy.device)
    if scored and config.rl_weight > 0:
        batch = sample_batch(policy, scored)
        logprobs = response_logprobs(policy.model, batch)
        rewards = torch.tensor([s.reward for s in scored], device=policy.device)
        baselines = baselines_for(scored, config).to(policy.device)
        values = token_values.to(policy.device) if config.use_critic and token_values is not None else None
        advantages = token_advantages(rewards, baselines, values, batch.response_mask)
        rl = rl_loss(logprobs, behaviour_logprobs(scored, batch), advantages, batch.response_mask, config)
        loss = loss + config.rl_weight * rl
        stats |= {"loss/rl": float(rl.detach()), "rl/mean_advantage": float((rewards - baselines).mean())}
    if ground_truth and config.ce_weight > 0:
        gt = policy.batch([e.prompt_ids for e in ground_truth], [e.program_ids for e in ground_truth])
        ce = cross_entropy_loss(response_logprobs(policy.model, gt), gt.response_mask)
        loss = loss + config.ce_weight * ce
        stats["loss/ce"] = float(ce.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.model.parameters(), max_grad_norm))
    optimizer.step()
    policy.version += 1
    stats["loss/total"] = float(loss.detach())
    return stats


def behaviour_logprobs(scored: Sequence[ScoredSample], batch: TokenBatch) -> torch.Tensor:
    """The behaviour policy's log-probs, right-padded like ``batch.response_ids``. Shape: (b, t)."""
    out = torch.zeros(batch.response_ids.shape, device=batch.response_ids.device)
    for row, s in enumerate(scored):
        out[row, : len(s.sample.logprobs)] = torch.tensor(s.sample.logprobs)
    return out
