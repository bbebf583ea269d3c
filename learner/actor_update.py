"""One actor update: CodeRL's critic-weighted policy gradient on executed samples plus cross-entropy
on ground truth, with the options of ``ActorLossConfig``.

The step trains on the exact sampled token ids (``SampledProgram.token_ids``), never on a
re-tokenisation of the decoded program.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from actors.policy import Policy
from models.sequences import TokenBatch, response_logprobs, take_rows

from .batch import ScoredSample, TrainBatch
from .config import ActorLossConfig
from .distributed import DataParallel
from .losses import (
    cross_entropy_loss,
    group_mean_baseline,
    policy_gradient_loss,
    ppo_clip_policy_loss,
    token_advantages,
    truncated_is_policy_loss,
)
from .micro import autocast, chunks, share

__all__ = ["actor_step", "baselines_for", "behaviour_logprobs", "ce_backward", "rl_loss"]


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
    micro_batch_tokens: int = 0,
    precision: str = "fp32",
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """L = rl_weight * L_rl + ce_weight * L_ce; one optimizer step; the policy version advances.

    ``token_values``: the critic's q_hat for this rank's rows of ``batch.sampled_tokens``
    (``dp.rows``), shape (b, t), or None to weight every token by 1 (no critic). ``ground_truth``:
    the whole cross-entropy batch, or None. Gradients accumulate over micro-batches of at most
    ``micro_batch_tokens`` padded tokens (0: one pass), each loss scaled by its share of the whole
    batch (learner/micro.py), and, with data parallelism, over the ranks' shares of the rows
    (learner/distributed.py): the same update as one pass in one process.
    """
    dp = dp or DataParallel.single()
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    stats: dict[str, float] = {}
    rl = ce = 0.0
    use_rl = bool(batch.sampled) and config.rl_weight > 0
    use_ce = ground_truth is not None and config.ce_weight > 0
    if use_rl:
        rl, advantage = _rl_backward(policy, batch, token_values, config, micro_batch_tokens, precision, dp)
        stats["rl/mean_advantage"] = advantage
    if use_ce:
        assert ground_truth is not None
        ce = ce_backward(policy, ground_truth, config.ce_weight, micro_batch_tokens, precision, dp)
    dp.sum_gradients(policy.model.parameters())
    rl, ce = dp.sum_floats([rl, ce])
    if use_rl:
        stats["loss/rl"] = rl
    if use_ce:
        stats["loss/ce"] = ce
    stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.model.parameters(), max_grad_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # the gradients' memory is free for the critic's step
    policy.version += 1
    stats["loss/total"] = config.rl_weight * rl + config.ce_weight * ce
    return stats


def _rl_backward(
    policy: Policy,
    batch: TrainBatch,
    token_values: torch.Tensor | None,
    config: ActorLossConfig,
    micro_batch_tokens: int,
    precision: str,
    dp: DataParallel,
) -> tuple[float, float]:
    """Accumulate rl_weight * L_rl's gradient over this rank's rows; returns their part of L_rl
    and the whole batch's mean advantage r - b."""
    tokens = batch.sampled_tokens(policy.pad_id, policy.device)
    rewards = batch.rewards().to(policy.device)
    baselines = baselines_for(batch.sampled, config).to(policy.device)
    mean_advantage = float((rewards - baselines).mean())
    rows = dp.rows(len(batch.sampled))
    mine = take_rows(tokens, rows)
    rewards, baselines = rewards[rows], baselines[rows]
    behaviour = behaviour_logprobs(batch.sampled[rows], mine)
    values = token_values.to(policy.device) if token_values is not None else None
    loss = 0.0
    for selected, micro in chunks(mine, micro_batch_tokens):
        width = micro.response_ids.shape[1]
        with autocast(policy.device, precision):
            logprobs = response_logprobs(policy.model, micro).float()
        micro_values = values[selected, :width] if values is not None else None
        advantages = token_advantages(
            rewards[selected], baselines[selected], micro_values, micro.response_mask
        )
        part = rl_loss(logprobs, behaviour[selected, :width], advantages, micro.response_mask, config)
        part = part * share(micro.response_mask, tokens.response_mask, config.normalization)
        (config.rl_weight * part).backward()
        loss += float(part.detach())
    return loss, mean_advantage


def ce_backward(
    policy: Policy,
    ground_truth: TokenBatch,
    weight: float,
    micro_batch_tokens: int,
    precision: str,
    dp: DataParallel | None = None,
) -> float:
    """Accumulate weight * L_ce's gradient (L_ce: the token-mean cross-entropy of the whole
    ``ground_truth`` batch) over this rank's rows; returns their part of L_ce."""
    dp = dp or DataParallel.single()
    mine = take_rows(ground_truth, dp.rows(ground_truth.prompt_ids.shape[0]))
    loss = 0.0
    for _, micro in chunks(mine, micro_batch_tokens):
        with autocast(policy.device, precision):
            logprobs = response_logprobs(policy.model, micro).float()
        part = cross_entropy_loss(logprobs, micro.response_mask)
        part = part * share(micro.response_mask, ground_truth.response_mask, "token_mean")
        (weight * part).backward()
        loss += float(part.detach())
    return loss


def behaviour_logprobs(scored: Sequence[ScoredSample], tokens: TokenBatch) -> torch.Tensor:
    """The behaviour policy's log-probs, right-padded like ``tokens.response_ids``. Shape: (b, t)."""
    out = torch.zeros(tokens.response_ids.shape, device=tokens.response_ids.device)
    for row, s in enumerate(scored):
        out[row, : len(s.sample.logprobs)] = torch.tensor(s.sample.logprobs)
    return out
