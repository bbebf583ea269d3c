"""One actor update on sampled programs: direction, critic weighting, baselines, corrections."""

from __future__ import annotations

import math

import pytest
import torch

from actors.config import PolicyConfig, SamplingConfig
from actors.policy import Policy
from coderl.outcomes import InfrastructureFault, OutcomeClass, RewardConfig, Verdict
from coderl.problem import Problem
from learner.actor_update import actor_step, baselines_for, behaviour_logprobs, rl_loss
from learner.batch import ScoredSample, TrainBatch, score
from learner.config import ActorLossConfig, OptimizerConfig
from learner.losses import token_advantages
from learner.micro import micro_slices
from learner.sft import make_optimizer, sft_examples
from models.sequences import TokenBatch, response_logprobs, take_rows


def _scored(
    policy: Policy, problems: list[Problem], rewards: list[float], greedy: float | None = None
) -> TrainBatch:
    samples = policy.sample(
        problems, SamplingConfig(n=len(rewards) // len(problems), temperature=1.0, max_new_tokens=16)
    )
    return TrainBatch(
        [
            ScoredSample(
                sample,
                Verdict.PASSED if reward > 0 else Verdict.FAILED_TEST,
                OutcomeClass.PASSED if reward > 0 else OutcomeClass.FAILED_TEST,
                reward,
                baseline_reward=greedy,
            )
            for sample, reward in zip(samples, rewards, strict=True)
        ]
    )


def _tokens(policy: Policy, batch: TrainBatch) -> TokenBatch:
    return batch.sampled_tokens(policy.pad_id, policy.device)


def _sequence_logprob(policy: Policy, batch: TrainBatch) -> torch.Tensor:
    with torch.no_grad():
        return response_logprobs(policy.model, _tokens(policy, batch)).sum(dim=1)


def test_rl_step_raises_rewarded_and_lowers_punished_samples(
    policy: Policy, add_problems: list[Problem]
) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -1.0], greedy=0.0)
    config = ActorLossConfig(ce_weight=0.0)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3, weight_decay=0.0))
    before = _sequence_logprob(policy, scored)
    stats = actor_step(policy, optimizer, scored, None, None, config, max_grad_norm=1.0)
    after = _sequence_logprob(policy, scored)
    assert after[0] > before[0] and after[1] < before[1]
    assert policy.version == 1
    assert stats["rl/mean_advantage"] == pytest.approx(0.0)
    assert "loss/ce" not in stats


def test_zero_critic_values_leave_only_the_cross_entropy_gradient(
    policy: Policy, add_problems: list[Problem]
) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -0.3], greedy=-1.0)
    zeros = torch.zeros(_tokens(policy, scored).response_ids.shape)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
    stats = actor_step(
        policy, optimizer, scored, None, zeros, ActorLossConfig(ce_weight=0.0), max_grad_norm=1.0
    )
    assert stats["loss/rl"] == 0.0 and stats["grad_norm"] == 0.0


def test_unit_critic_values_equal_no_critic(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, 1.0], greedy=-0.3)
    batch = _tokens(policy, scored)
    logprobs = response_logprobs(policy.model, batch)
    rewards = scored.rewards()
    config = ActorLossConfig()
    baselines = baselines_for(scored.sampled, config)
    with_ones = token_advantages(
        rewards, baselines, torch.ones(batch.response_ids.shape), batch.response_mask
    )
    without = token_advantages(rewards, baselines, None, batch.response_mask)
    torch.testing.assert_close(with_ones, without)
    behaviour = behaviour_logprobs(scored.sampled, batch)
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
    scored = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, -1.0], greedy=-0.3).sampled
    assert baselines_for(scored, ActorLossConfig()).tolist() == pytest.approx([-0.3] * 4)
    assert baselines_for(scored, ActorLossConfig(baseline="none")).tolist() == [0.0] * 4
    # Leave-one-out within each group (a problem's samples of one call): (1.0 | -0.3), (-0.6 | -1.0).
    group = baselines_for(scored, ActorLossConfig(baseline="group_mean")).tolist()
    assert group == pytest.approx([-0.3, 1.0, -1.0, -0.6])
    no_greedy = [ScoredSample(s.sample, s.verdict, s.outcome_class, s.reward) for s in scored]
    with pytest.raises(ValueError, match="greedy decode"):
        baselines_for(no_greedy, ActorLossConfig())


def test_mixed_step_reports_both_losses(policy: Policy, add_problems: list[Problem]) -> None:
    scored = _scored(policy, add_problems[:1], [1.0, -1.0], greedy=0.0)
    examples = sft_examples(policy, add_problems)
    ground_truth = policy.batch([e.prompt_ids for e in examples], [e.program_ids for e in examples])
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
    config = ActorLossConfig(ce_weight=0.5)
    stats = actor_step(policy, optimizer, scored, ground_truth, None, config, max_grad_norm=1.0)
    assert stats["loss/total"] == pytest.approx(stats["loss/rl"] + 0.5 * stats["loss/ce"], rel=1e-5)


def test_a_batch_is_padded_once_and_its_rows_are_what_padding_them_alone_gives(
    policy: Policy, add_problems: list[Problem]
) -> None:
    batch = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, 1.0], greedy=0.0)
    greedy = _scored(policy, add_problems[2:3], [-1.0]).sampled
    batch.greedy = greedy
    everything = batch.tokens(policy.pad_id, policy.device)
    assert batch.tokens(policy.pad_id, policy.device) is everything  # cached: padded once
    assert everything.response_ids.shape[0] == 5
    alone = policy.batch(
        [s.sample.prompt_token_ids for s in batch.sampled], [s.sample.token_ids for s in batch.sampled]
    )
    for got, expected in zip(take_rows(everything, slice(0, 4)), alone, strict=True):
        torch.testing.assert_close(got, expected)


def test_the_learner_scores_verdicts_with_the_runs_rewards(
    policy: Policy, add_problems: list[Problem]
) -> None:
    (sample,) = policy.sample(add_problems[:1], SamplingConfig(n=1, max_new_tokens=4))
    rewards = RewardConfig(compile_error=-2.0, runtime_error=-0.5, failed_test=0.0, passed=3.0)
    assert score(sample, Verdict.PASSED, rewards).reward == 3.0
    timeout = score(sample, Verdict.TIMEOUT, rewards)
    assert (timeout.outcome_class, timeout.reward) == (OutcomeClass.RUNTIME_ERROR, -0.5)
    assert score(sample, Verdict.COMPILE_ERROR, RewardConfig()).reward == -1.0
    with pytest.raises(InfrastructureFault):
        score(sample, Verdict.SANDBOX_ERROR, rewards)


@pytest.mark.parametrize("normalization", ["sum", "token_mean", "sequence_mean"])
def test_micro_batches_make_the_same_update_as_one_pass(
    add_problems: list[Problem], normalization: str
) -> None:
    """Gradient accumulation over token-budgeted micro-batches, each loss scaled by its share of the
    whole batch, equals one pass over the whole batch (RL with critic values, plus CE)."""
    config = ActorLossConfig(normalization=normalization, ce_weight=0.5)  # type: ignore[arg-type]
    updated = []
    for budget in (0, 60):
        policy = Policy.load(PolicyConfig(model="tiny", device="cpu"))
        scored = _scored(policy, add_problems[:3], [1.0, -0.3, -0.6, 1.0, -1.0, 1.0], greedy=-0.3)
        tokens = _tokens(policy, scored)
        values = torch.linspace(0.1, 1.0, tokens.response_ids.numel()).reshape(tokens.response_ids.shape)
        examples = sft_examples(policy, add_problems)
        ground_truth = policy.batch([e.prompt_ids for e in examples], [e.program_ids for e in examples])
        if budget:
            assert len(micro_slices(tokens, budget)) >= 3 and len(micro_slices(ground_truth, budget)) >= 2
        # SGD: the step is the gradient itself (Adam's first step divides near-zero gradients by
        # their own size, which would magnify float rounding into visible weight differences).
        optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.1)
        stats = actor_step(policy, optimizer, scored, ground_truth, values, config, 100.0, budget)
        updated.append((stats, policy.cpu_weights()))
    (whole, before), (micro, after) = updated
    for key in ("loss/rl", "loss/ce", "loss/total", "grad_norm"):
        assert micro[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-6), key
    for name, weight in before.items():
        torch.testing.assert_close(after[name], weight, rtol=1e-4, atol=1e-6, msg=name)


def test_micro_slices_keep_within_the_token_budget(policy: Policy, add_problems: list[Problem]) -> None:
    tokens = _tokens(policy, _scored(policy, add_problems[:3], [1.0] * 6))
    for budget in (1, 50, 120, 10_000):
        slices = micro_slices(tokens, budget)
        assert [i for s in slices for i in range(s.start, s.stop)] == list(range(6))  # every row once
        for selected in slices:
            part = take_rows(tokens, selected)
            padded = part.prompt_ids.numel() + part.response_ids.numel()
            assert padded <= budget or selected.stop - selected.start == 1
    assert micro_slices(tokens, 0) == [slice(0, 6)]


def test_bf16_autocast_and_activation_checkpointing_keep_fp32_weights(add_problems: list[Problem]) -> None:
    policy = Policy.load(PolicyConfig(model="tiny", device="cpu"))
    policy.model.activation_checkpointing_enable()
    scored = _scored(policy, add_problems[:2], [1.0, -0.3, -0.6, 1.0], greedy=-0.3)
    optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
    stats = actor_step(policy, optimizer, scored, None, None, ActorLossConfig(), 1.0, 0, precision="bf16")
    assert stats["grad_norm"] > 0 and math.isfinite(stats["loss/rl"])
    assert all(p.dtype == torch.float32 for p in policy.model.parameters())
