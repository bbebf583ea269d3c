"""One actor update: CodeRL's critic-weighted policy gradient on executed samples plus cross-entropy
on ground truth, with the options of ``ActorLossConfig``.

The step trains on the exact sampled token ids (``SampledProgram.token_ids``), never on a
re-tokenisation of the decoded program.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from actors.policy import Policy
from models.sequences import TokenBatch, response_logprobs

from .batch import ScoredSample, TrainBatch
from .config import ActorLossConfig
from .losses import (
    cross_entropy_loss,
    group_mean_baseline,
    policy_gradient_loss,
    ppo_clip_policy_loss,
    token_advantages,
    truncated_is_policy_loss,
)

__all__ = ["actor_step", "baselines_for", "behaviour_logprobs", "rl_loss"]


def baselines_for(scored: Sequence[ScoredSample], config: ActorLossConfig) -> torch.Tensor:
    """r(W^b) per sample: the greedy decode's reward, the leave-one-out mean of its group, or 0."""
    rewards = torch.tensor([s.reward for s in scored])
    if config.baseline == "none":
        return torch.zeros_like(rewards)
    if config.baseline == "group_mean":
        index: dict[str, int] = {}
        groups = torch.tensor([index.setdefault(s.sample.group_id, len(index)) for s in scored])
        return group_mean_baseline(rewards, groups)
    missing = [s.sample.sample_id for s in scored if s.baseline_reward is None]
    if missing:
        raise ValueError(f"baseline 'greedy' needs the greedy decode's reward; missing for {missing[:3]}")
    return torch.tensor([float(s.baseline_reward) for s in scored])  # type: ignore[arg-type]


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
    batch: TrainBatch,
    ground_truth: TokenBatch | None,
    token_values: torch.Tensor | None,
    config: ActorLossConfig,
    max_grad_norm: float,
) -> dict[str, float]:
    """L = rl_weight * L_rl + ce_weight * L_ce; one optimizer step; the policy version advances.

    ``token_values``: the critic's q_hat for ``batch.sampled_tokens``, shape (b, t), or None to
    weight every token by 1 (no critic). ``ground_truth``: the cross-entropy batch, or None.
    """
    policy.model.train()
    stats: dict[str, float] = {}
    loss = torch.zeros((), device=policy.device)
    if batch.sampled and config.rl_weight > 0:
        tokens = batch.sampled_tokens(policy.pad_id, policy.device)
        logprobs = response_logprobs(policy.model, tokens)
        rewards = batch.rewards().to(policy.device)
        baselines = baselines_for(batch.sampled, config).to(policy.device)
        values = token_values.to(policy.device) if token_values is not None else None
        advantages = token_advantages(rewards, baselines, values, tokens.response_mask)
        behaviour = behaviour_logprobs(batch.sampled, tokens)
        rl = rl_loss(logprobs, behaviour, advantages, tokens.response_mask, config)
        loss = loss + config.rl_weight * rl
        stats |= {"loss/rl": float(rl.detach()), "rl/mean_advantage": float((rewards - baselines).mean())}
    if ground_truth is not None and config.ce_weight > 0:
        ce = cross_entropy_loss(response_logprobs(policy.model, ground_truth), ground_truth.response_mask)
        loss = loss + config.ce_weight * ce
        stats["loss/ce"] = float(ce.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.model.parameters(), max_grad_norm))
    optimizer.step()
    policy.version += 1
    stats["loss/total"] = float(loss.detach())
    return stats


def behaviour_logprobs(scored: Sequence[ScoredSample], tokens: TokenBatch) -> torch.Tensor:
    """The behaviour policy's log-probs, right-padded like ``tokens.response_ids``. Shape: (b, t)."""
    out = torch.zeros(tokens.response_ids.shape, device=tokens.response_ids.device)
    for row, s in enumerate(scored):
        out[row, : len(s.sample.logprobs)] = torch.tensor(s.sample.logprobs)
    return out
