"""The actor's losses, as pure functions of token log-probabilities.

Shapes: b sequences, t response tokens. ``mask`` is 1 on real tokens (EOS included), 0 on padding;
``logprobs`` are log p_theta(w_j | w_<j, D) of the response tokens (models.sequences).
"""

from __future__ import annotations

import torch

from learner.config import Normalization

__all__ = [
    "Normalization",
    "cross_entropy_loss",
    "group_mean_baseline",
    "policy_gradient_loss",
    "ppo_clip_policy_loss",
    "reduce_tokens",
    "token_advantages",
    "truncated_is_policy_loss",
]


def reduce_tokens(per_token: torch.Tensor, mask: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Reduce a per-token quantity x_ij to a scalar.

    - ``sum``:           (1/b) * sum_i sum_j m_ij x_ij         (the paper's sum over tokens)
    - ``token_mean``:    sum_ij m_ij x_ij / sum_ij m_ij         (the official code's mean)
    - ``sequence_mean``: (1/b) * sum_i (sum_j m_ij x_ij / sum_j m_ij)
    Shape: (b, t), (b, t) -> ().
    """
    # Select rather than multiply, so an inf or nan on padding cannot leak in.
    masked = torch.where(mask.bool(), per_token, torch.zeros_like(per_token))
    if normalization == "sum":
        return masked.sum() / per_token.shape[0]
    if normalization == "token_mean":
        return masked.sum() / mask.sum().clamp(min=1)
    if normalization == "sequence_mean":
        return (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    raise ValueError(f"normalization: expected sum, token_mean or sequence_mean, got {normalization!r}")


def cross_entropy_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on ground-truth programs: L_ce = -sum_ij m_ij log p(w_ij) / sum_ij m_ij.

    Shape: (b, t), (b, t) -> ().
    """
    return reduce_tokens(-logprobs, mask, "token_mean")


def group_mean_baseline(
    rewards: torch.Tensor, group_ids: torch.Tensor, leave_one_out: bool = True
) -> torch.Tensor:
    """A baseline per sample from the other samples of the same problem (no greedy decode needed).

    With n_g samples in sample i's group g and S_g their reward sum:
    leave-one-out (unbiased): b_i = (S_g - r_i) / (n_g - 1), and b_i = r_i when n_g = 1 (no signal);
    plain mean:               b_i = S_g / n_g.
    Shape: (b,), (b,) -> (b,).
    """
    same_group = (group_ids[:, None] == group_ids[None, :]).to(rewards.dtype)
    group_sum = same_group @ rewards
    group_size = same_group.sum(dim=1)
    if not leave_one_out:
        return group_sum / group_size
    others = group_size - 1
    return torch.where(others > 0, (group_sum - rewards) / others.clamp(min=1), rewards)


def token_advantages(
    rewards: torch.Tensor, baselines: torch.Tensor, token_values: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    """CodeRL's per-token return: A_ij = (r(W_i^s) - r(W_i^b)) * q_hat(w_ij), 0 on padding.

    ``token_values`` None drops the critic weighting (q_hat = 1): plain REINFORCE with a baseline.
    Shape: (b,), (b,), (b, t) or None, (b, t) -> (b, t).
    """
    relative = (rewards - baselines).float()[:, None]
    weights = mask.float() if token_values is None else token_values * mask
    return relative * weights


def policy_gradient_loss(
    logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, normalization: Normalization
) -> torch.Tensor:
    """CodeRL's policy gradient: L_rl = -reduce_ij(A_ij * log p_theta(w_ij)), A held constant.

    With A_ij = (r(W^s) - r(W^b)) q_hat(w_ij) and ``sum`` normalisation this is the paper's
    -(r(W^s) - r(W^b)) * sum_j q_hat(w_j) log p(w_j). Shape: (b, t) x3 -> ().
    """
    return reduce_tokens(-advantages.detach() * logprobs, mask, normalization)


def truncated_is_policy_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    normalization: Normalization,
    max_ratio: float = 1.0,
) -> torch.Tensor:
    """Off-policy correction for samples from an older policy, with a truncated importance ratio.

    rho_ij = min(exp(log p_theta(w_ij) - log mu(w_ij)), max_ratio), held constant;
    L = -reduce_ij(rho_ij * A_ij * log p_theta(w_ij)). Truncation bounds the variance (as in
    V-trace); rho = 1 everywhere recovers ``policy_gradient_loss``. Shape: (b, t) x4 -> ().
    """
    ratio = torch.exp(logprobs.detach() - behaviour_logprobs).clamp(max=max_ratio)
    return reduce_tokens(-(ratio * advantages.detach()) * logprobs, mask, normalization)


def ppo_clip_policy_loss(
    logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    normalization: Normalization,
    clip_epsilon: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped surrogate on CodeRL's token advantages.

    rho_ij = exp(log p_theta(w_ij) - log mu(w_ij));
    L = -reduce_ij(min(rho_ij A_ij, clip(rho_ij, 1 - eps, 1 + eps) A_ij)). Its gradient at
    rho = 1 equals ``policy_gradient_loss``'s. Shape: (b, t) x4 -> ().
    """
    ratio = torch.exp(logprobs - behaviour_logprobs)
    advantages = advantages.detach()
    surrogate = torch.minimum(
        ratio * advantages, ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon) * advantages
    )
    return reduce_tokens(-surrogate, mask, normalization)
