"""One actor update on sampled programs: direction, critic weighting, baselines, corrections."""

from __future__ import annotations

import pytest
import torch

from actors.config import SamplingConfig
from actors.policy import Policy
from learner.actor_update import (
    ScoredSample,
    actor_step,
    baselines_for,
    behaviour_logprobs,
    rl_loss,
    sample_batch,
)
from learner.config import ActorLossConfig, OptimizerConfig
from learner.losses import token_advantages
from learner.sft import make_optimizer, sft_examples
from models.sequences import response_logprobs
from problems import Problem


def _scored(
    policy: Policy, problems: list[Problem], rewards: list[float], greedy: float | None = None
) -> list:
    samples = policy.sample(
        problems, SamplingConfig(n=len(rewards) // len(problems), temperature=1.0, max_new_tokens=16)
    )
    return [
        ScoredSample(sample, reward, outcome_class=3 if reward > 0 else 2, greedy_reward=greedy)
        for sample, reward in zip(samples, rewards, strict=True)
    ]


def _sequence_logprob(policy: Policy, scored: list[ScoredSample]) -> torch.Tensor:
    with torch.no_grad():
        return response_logprobs(policy.model, sample_batch(policy, scored)).sum(dim=1)


def test_rl_step_raises_rewarded_and_lowers_punished_samples(
    policy: Policy, add_problems: list[Problem]
) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -1.0], greedy=0.0)
    config = ActorLossConfig(use_critic=False, ce_weight=0.0)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3, weight_decay=0.0))
    before = _sequence_logprob(policy, scored)
    stats = actor_step(policy, optimizer, scored, [], None, config, max_grad_norm=1.0)
    after = _sequence_logprob(policy, scored)
    assert after[0] > before[0] and after[1] < before[1]
    assert policy.version == 1
    assert stats["rl/mean_advantage"] == pytest.approx(0.0)
    assert "loss/ce" not in stats


def test_zero_critic_values_leave_only_the_cross_entropy_gradient(
    policy: Policy, add_problems: list[Problem]
) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -0.3], greedy=-1.0)
    zeros = torch.zeros(sample_batch(policy, scored).response_ids.shape)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
    stats = actor_step(
        policy, optimizer, scored, [], zeros, ActorLossConfig(ce_weight=0.0), max_grad_norm=1.0
    )
    assert stats["loss/rl"] == 0.0 and stats["grad_norm"] == 0.0


def test_unit_critic_values_equal_no_critic(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, 1.0], greedy=-0.3)
    batch = sample_batch(policy, scored)
    logprobs = response_logprobs(policy.model, batch)
    rewards = torch.tensor([s.reward for s in scored])
    config = ActorLossConfig()
    baselines = baselines_for(scored, config)
    with_ones = token_advantages(
        rewards, baselines, torch.ones(batch.response_ids.shape), batch.response_mask
    )
    without = token_advantages(rewards, baselines, None, batch.response_mask)
    torch.testing.assert_close(with_ones, without)
    behaviour = behaviour_logprobs(scored, batch)
    torch.testing.assert_close(behaviour, logprobs.detach(), atol=1e-4, rtol=1e-4)
    # On-policy samples: every correction gives plain REINFORCE's gradient (truncated: its value too).
    leaf = logprobs.detach().requires_grad_()
    (plain_grad,) = torch.autograd.grad(
        rl_loss(leaf, behaviour, with_ones, batch.response_mask, config), leaf
    )
    for importance in ("truncated", "ppo_clip"):
        corrected_config = config.model_copy(update={"importance": importance})
        corrected = rl_loss(leaf, behaviour, with_ones, batch.response_mask, corrected_config)
        (grad,) = torch.autograd.grad(corrected, leaf)
        torch.testing.assert_close(grad, plain_grad, atol=1e-4, rtol=1e-4)
    truncated = rl_loss(
        logprobs,
        behaviour,
        with_ones,
        batch.response_mask,
        config.model_copy(update={"importance": "truncated"}),
    )
    torch.testing.assert_close(
        truncated, rl_loss(logprobs, behaviour, with_ones, batch.response_mask, config)
    )


def test_baselines(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, -1.0], greedy=-0.3)
    assert baselines_for(scored, ActorLossConfig()).tolist() == pytest.approx([-0.3] * 4)
    assert baselines_for(scored, ActorLossConfig(baseline="none")).tolist() == [0.0] * 4
    # Leave-one-out within each problem: (1.0 | -0.3) and (-0.6 | -1.0).
    group = baselines_for(scored, ActorLossConfig(baseline="group_mean")).tolist()
    assert group == pytest.approx([-0.3, 1.0, -1.0, -0.6])
    no_greedy = [ScoredSample(s.sample, s.reward, s.outcome_class) for s in scored]
    with pytest.raises(ValueError, match="greedy decode"):
        baselines_for(no_greedy, ActorLossConfig())


def test_critic_on_without_values_is_refused(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:1], [1.0], greedy=0.0)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig())
    with pytest.raises(ValueError, match="token values"):
        actor_step(policy, optimizer, scored, [], None, ActorLossConfig(), max_grad_norm=1.0)


def test_mixed_step_reports_both_losses(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -1.0], greedy=0.0)
    ground_truth = sft_examples(policy, add_problems)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
    config = ActorLossConfig(use_critic=False, ce_weight=0.5)
    stats = actor_step(policy, optimizer, scored, ground_truth, None, config, max_grad_norm=1.0)
    assert stats["loss/total"] == pytest.approx(stats["loss/rl"] + 0.5 * stats["loss/ce"], rel=1e-5)
