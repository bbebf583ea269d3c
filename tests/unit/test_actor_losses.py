"""learner/losses.py: the actor's losses against values and gradients worked out by hand."""

from __future__ import annotations

from math import log

import pytest
import torch
from torch.testing import assert_close

from learner.losses import (
    Normalization,
    cross_entropy_loss,
    group_mean_baseline,
    policy_gradient_loss,
    ppo_clip_policy_loss,
    reduce_tokens,
    token_advantages,
    truncated_is_policy_loss,
)

# Two sequences of three tokens: the first has 2 real tokens, the second 1.
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)

# 1 / (the normaliser of each token) for each normalisation, on MASK:
#   sum:           1 / b = 1/2 everywhere
#   token_mean:    1 / (number of real tokens) = 1/3 everywhere
#   sequence_mean: 1 / (b * real tokens of the row) = 1/(2*2) on row 0, 1/(2*1) on row 1
TOKEN_WEIGHT: dict[str, torch.Tensor] = {
    "sum": torch.full((2, 3), 1 / 2, dtype=torch.float64),
    "token_mean": torch.full((2, 3), 1 / 3, dtype=torch.float64),
    "sequence_mean": torch.tensor([[1 / 4, 1 / 4, 1 / 4], [1 / 2, 1 / 2, 1 / 2]], dtype=torch.float64),
}
NORMALIZATIONS: tuple[Normalization, ...] = ("sum", "token_mean", "sequence_mean")


# ---- reduce_tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("normalization", "expected"),
    [
        ("sum", 7 / 2),  # (1 + 2 + 4) / b, b = 2
        ("token_mean", 7 / 3),  # (1 + 2 + 4) / 3 real tokens
        ("sequence_mean", 2.75),  # ((1 + 2)/2 + 4/1) / 2 = (1.5 + 4) / 2
    ],
)
def test_reduce_tokens_normalizations(normalization: Normalization, expected: float) -> None:
    # padding holds large values that would dominate any result if they leaked in
    per_token = torch.tensor([[1.0, 2.0, 100.0], [4.0, 200.0, 300.0]], dtype=torch.float64)
    assert reduce_tokens(per_token, MASK, normalization).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("normalization", "expected"),
    [
        ("sum", 3.0),  # (2 + 4) / b, b = 2: the empty row still counts in b
        ("token_mean", 3.0),  # (2 + 4) / 2 real tokens
        ("sequence_mean", 1.5),  # ((2 + 4)/2 + 0) / 2: an empty row contributes 0, not NaN
    ],
)
def test_reduce_tokens_with_an_empty_row(normalization: Normalization, expected: float) -> None:
    per_token = torch.tensor([[2.0, 4.0], [9.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    assert reduce_tokens(per_token, mask, normalization).item() == pytest.approx(expected, rel=1e-12)


def test_reduce_tokens_all_padding_gives_zero_not_nan() -> None:
    per_token = torch.tensor([[5.0, 6.0]])
    mask = torch.zeros(1, 2)
    for normalization in NORMALIZATIONS:
        assert reduce_tokens(per_token, mask, normalization).item() == 0.0


def test_reduce_tokens_rejects_an_unknown_normalization() -> None:
    with pytest.raises(ValueError, match="normalization"):
        reduce_tokens(torch.ones(1, 2), torch.ones(1, 2), "mean")  # type: ignore[arg-type]


# ---- cross_entropy_loss ---------------------------------------------------------------------------------


def test_cross_entropy_is_the_token_mean_negative_logprob() -> None:
    # real tokens have p = 1/2, 1/4, 1/8: -(ln 1/2 + ln 1/4 + ln 1/8) / 3 = (1 + 2 + 3) ln 2 / 3 = 2 ln 2
    logprobs = torch.tensor([[log(0.5), log(0.25), -50.0], [log(0.125), -70.0, -90.0]], dtype=torch.float64)
    assert cross_entropy_loss(logprobs, MASK).item() == pytest.approx(2 * log(2), rel=1e-12)


def test_cross_entropy_gradient_is_minus_one_over_token_count() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], dtype=torch.float64, requires_grad=True)
    cross_entropy_loss(logprobs, MASK).backward()
    # d/dlogp_ij of -sum m logp / 3 = -m_ij / 3
    assert_close(logprobs.grad, -MASK / 3)


# ---- group_mean_baseline --------------------------------------------------------------------------------

# Groups interleaved: 7 -> samples 0, 2, 4 (rewards 1, 0, -1; sum 0); 3 -> samples 1, 3 (0.5, -0.3;
# sum 0.2); 9 -> sample 5 alone (0.7).
REWARDS = torch.tensor([1.0, 0.5, 0.0, -0.3, -1.0, 0.7], dtype=torch.float64)
GROUPS = torch.tensor([7, 3, 7, 3, 7, 9])


def test_leave_one_out_baseline() -> None:
    expected = torch.tensor(
        [
            (0 - 1.0) / 2,  # group 7 without sample 0: (0 + -1) / 2
            -0.3,  # group 3 without sample 1: the other one's reward
            (0 - 0.0) / 2,  # group 7 without sample 2: (1 + -1) / 2
            0.5,  # group 3 without sample 3
            (0 + 1.0) / 2,  # group 7 without sample 4: (1 + 0) / 2
            0.7,  # a group of one has no other sample: b = r, so r - b = 0
        ],
        dtype=torch.float64,
    )
    assert_close(group_mean_baseline(REWARDS, GROUPS, leave_one_out=True), expected)


def test_leave_one_out_is_the_default() -> None:
    assert_close(group_mean_baseline(REWARDS, GROUPS), group_mean_baseline(REWARDS, GROUPS, True))


def test_plain_group_mean_baseline() -> None:
    # group 7: 0 / 3; group 3: 0.2 / 2; group 9: 0.7 / 1
    expected = torch.tensor([0.0, 0.1, 0.0, 0.1, 0.0, 0.7], dtype=torch.float64)
    assert_close(group_mean_baseline(REWARDS, GROUPS, leave_one_out=False), expected)


def test_group_of_one_has_zero_advantage() -> None:
    rewards = torch.tensor([0.25, -1.0], dtype=torch.float64)
    groups = torch.tensor([0, 1])
    for leave_one_out in (True, False):
        assert_close(group_mean_baseline(rewards, groups, leave_one_out), rewards)


# ---- token_advantages -----------------------------------------------------------------------------------


def test_token_advantages_without_token_values() -> None:
    rewards = torch.tensor([1.0, 0.0])
    baselines = torch.tensor([0.25, 0.5])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # r - b = 0.75 and -0.5, repeated on real tokens, 0 on padding
    expected = torch.tensor([[0.75, 0.75, 0.0], [-0.5, 0.0, 0.0]])
    assert_close(token_advantages(rewards, baselines, None, mask), expected)


def test_token_advantages_weighted_by_token_values() -> None:
    rewards = torch.tensor([1.0, 0.0])
    baselines = torch.tensor([0.25, 0.5])
    values = torch.tensor([[0.2, 0.4, 0.9], [0.6, 0.8, 0.3]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # 0.75 * (0.2, 0.4, pad) and -0.5 * (0.6, pad, pad)
    expected = torch.tensor([[0.15, 0.3, 0.0], [-0.3, 0.0, 0.0]])
    assert_close(token_advantages(rewards, baselines, values, mask), expected)


def test_token_advantages_accept_integer_rewards() -> None:
    rewards = torch.tensor([1, -1])
    baselines = torch.tensor([0, 0])
    out = token_advantages(rewards, baselines, None, torch.tensor([[1, 0], [1, 1]]))
    assert out.dtype == torch.float32
    assert_close(out, torch.tensor([[1.0, 0.0], [-1.0, -1.0]]))


# ---- policy_gradient_loss -------------------------------------------------------------------------------

# Padding carries non-zero advantages and log-probabilities: they must not count.
LOGPROBS = [[-1.0, -2.0, -3.0], [-0.5, -4.0, -5.0]]
ADVANTAGES = [[2.0, 1.0, 7.0], [-1.0, 9.0, 9.0]]
# -A * logp on real tokens: row 0: 2 + 2 = 4 (2 tokens), row 1: -0.5 (1 token)


@pytest.mark.parametrize(
    ("normalization", "expected"),
    [
        ("sum", 3.5 / 2),  # (4 - 0.5) / b
        ("token_mean", 3.5 / 3),  # (4 - 0.5) / 3 tokens
        ("sequence_mean", 0.75),  # (4/2 + -0.5/1) / 2
    ],
)
def test_policy_gradient_value_and_gradient(normalization: Normalization, expected: float) -> None:
    logprobs = torch.tensor(LOGPROBS, dtype=torch.float64, requires_grad=True)
    advantages = torch.tensor(ADVANTAGES, dtype=torch.float64, requires_grad=True)
    loss = policy_gradient_loss(logprobs, advantages, MASK, normalization)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # dL/dlogp_ij = -A_ij / norm on real tokens, 0 on padding
    expected_grad = -torch.tensor(ADVANTAGES, dtype=torch.float64) * MASK * TOKEN_WEIGHT[normalization]
    assert_close(logprobs.grad, expected_grad)
    assert logprobs.grad[0, 2] == 0.0 and logprobs.grad[1, 1:].eq(0).all()
    # the advantages are constants: nothing flows back into them
    assert advantages.grad is None


def test_policy_gradient_sum_is_the_papers_formula() -> None:
    # one sequence: -(r_s - r_b) * sum_j q_j log p_j with r_s - r_b = 1, q = (0.5, 1), log p = (ln .5, ln .25)
    # = -(0.5 ln 0.5 + ln 0.25) = 0.5 ln 2 + 2 ln 2 = 2.5 ln 2
    logprobs = torch.tensor([[log(0.5), log(0.25)]], dtype=torch.float64)
    advantages = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    loss = policy_gradient_loss(logprobs, advantages, torch.ones(1, 2), "sum")
    assert loss.item() == pytest.approx(2.5 * log(2), rel=1e-12)


# ---- truncated_is_policy_loss ---------------------------------------------------------------------------

# One sequence, three tokens: p_theta = (0.5, 0.2, 0.9), mu = (0.25, 0.4, 0.9): ratios 2, 0.5, 1.
TIS_LOGPROBS = [log(0.5), log(0.2), log(0.9)]
TIS_BEHAVIOUR = [log(0.25), log(0.4), log(0.9)]
TIS_ADVANTAGES = [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("max_ratio", "rho"),
    [
        (1.0, (1.0, 0.5, 1.0)),  # 2 truncated to 1
        (1.5, (1.5, 0.5, 1.0)),  # 2 truncated to 1.5
        (10.0, (2.0, 0.5, 1.0)),  # nothing truncated
    ],
)
def test_truncated_is_clamps_the_ratio(max_ratio: float, rho: tuple[float, float, float]) -> None:
    logprobs = torch.tensor([TIS_LOGPROBS], dtype=torch.float64, requires_grad=True)
    behaviour = torch.tensor([TIS_BEHAVIOUR], dtype=torch.float64)
    advantages = torch.tensor([TIS_ADVANTAGES], dtype=torch.float64, requires_grad=True)
    loss = truncated_is_policy_loss(
        logprobs, behaviour, advantages, torch.ones(1, 3), "sum", max_ratio=max_ratio
    )
    # L = -sum_j rho_j A_j log p_j (b = 1)
    expected = -(rho[0] * 1.0 * log(0.5) + rho[1] * 2.0 * log(0.2) + rho[2] * 3.0 * log(0.9))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # rho is held constant: dL/dlogp_j = -rho_j A_j (no d rho / d logp term)
    expected_grad = torch.tensor([[-rho[0] * 1.0, -rho[1] * 2.0, -rho[2] * 3.0]], dtype=torch.float64)
    assert_close(logprobs.grad, expected_grad)
    assert advantages.grad is None


def test_truncated_is_default_max_ratio_is_one() -> None:
    logprobs = torch.tensor([TIS_LOGPROBS], dtype=torch.float64)
    behaviour = torch.tensor([TIS_BEHAVIOUR], dtype=torch.float64)
    advantages = torch.tensor([TIS_ADVANTAGES], dtype=torch.float64)
    loss = truncated_is_policy_loss(logprobs, behaviour, advantages, torch.ones(1, 3), "sum")
    expected = -(1.0 * log(0.5) + 0.5 * 2.0 * log(0.2) + 3.0 * log(0.9))
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_truncated_is_at_ratio_one_is_the_policy_gradient(normalization: Normalization) -> None:
    logprobs = torch.tensor(LOGPROBS, dtype=torch.float64, requires_grad=True)
    behaviour = torch.tensor(LOGPROBS, dtype=torch.float64)  # on-policy: rho = 1
    advantages = torch.tensor(ADVANTAGES, dtype=torch.float64)
    loss = truncated_is_policy_loss(logprobs, behaviour, advantages, MASK, normalization, max_ratio=5.0)
    loss.backward()
    reference_logprobs = torch.tensor(LOGPROBS, dtype=torch.float64, requires_grad=True)
    reference = policy_gradient_loss(reference_logprobs, advantages, MASK, normalization)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    assert_close(logprobs.grad, reference_logprobs.grad)
    assert_close(
        logprobs.grad, -torch.tensor(ADVANTAGES, dtype=torch.float64) * MASK * TOKEN_WEIGHT[normalization]
    )


# ---- ppo_clip_policy_loss -------------------------------------------------------------------------------


def test_ppo_clips_on_both_sides_for_both_signs() -> None:
    # eps = 0.2, so the trust region is [0.8, 1.2]. Per token (ratio, A):
    #   (1.5, +1): min(1.5, 1.2) = 1.2          clipped   -> no gradient
    #   (0.5, +1): min(0.5, 0.8) = 0.5          unclipped -> dL/dlogp = -rho A = -0.5
    #   (0.5, -1): min(-0.5, -0.8) = -0.8       clipped   -> no gradient
    #   (1.5, -1): min(-1.5, -1.2) = -1.5       unclipped -> dL/dlogp = -rho A = +1.5
    #   (1.1, +2): inside, 2.2                  unclipped -> dL/dlogp = -2.2
    #   padding with a huge ratio (e^50) and advantage: ignored
    # L = -(1.2 + 0.5 - 0.8 - 1.5 + 2.2) / b = -1.6, b = 1
    behaviour = torch.tensor([[log(0.4), log(0.4), log(0.4), log(0.4), log(0.5), -50.0]], dtype=torch.float64)
    logprobs = torch.tensor(
        [[log(0.6), log(0.2), log(0.2), log(0.6), log(0.55), 0.0]], dtype=torch.float64, requires_grad=True
    )
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.float64)
    loss = ppo_clip_policy_loss(logprobs, behaviour, advantages, mask, "sum", clip_epsilon=0.2)
    assert loss.item() == pytest.approx(-1.6, rel=1e-12)
    loss.backward()
    assert_close(logprobs.grad, torch.tensor([[0.0, -0.5, 0.0, 1.5, -2.2, 0.0]], dtype=torch.float64))
    assert advantages.grad is None


def test_ppo_clip_epsilon_sets_the_trust_region() -> None:
    # ratio 1.5, A = +1: clipped to 1 + eps; eps = 0.2 -> 1.2, eps = 0.4 -> 1.4, eps = 0.6 -> 1.5 (inside)
    behaviour = torch.tensor([[log(0.4)]], dtype=torch.float64)
    logprobs = torch.tensor([[log(0.6)]], dtype=torch.float64)
    advantages = torch.ones(1, 1, dtype=torch.float64)
    for eps, expected in ((0.2, -1.2), (0.4, -1.4), (0.6, -1.5)):
        loss = ppo_clip_policy_loss(
            logprobs, behaviour, advantages, torch.ones(1, 1), "sum", clip_epsilon=eps
        )
        assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_ppo_gradient_at_ratio_one_is_the_policy_gradient(normalization: Normalization) -> None:
    logprobs = torch.tensor(LOGPROBS, dtype=torch.float64, requires_grad=True)
    behaviour = torch.tensor(LOGPROBS, dtype=torch.float64)  # rho = 1
    advantages = torch.tensor(ADVANTAGES, dtype=torch.float64)
    loss = ppo_clip_policy_loss(logprobs, behaviour, advantages, MASK, normalization)
    # at rho = 1 the surrogate is A itself, L = -reduce(A); real-token A: row 0 (2, 1), row 1 (-1)
    expected_value = {
        "sum": -(2 + 1 - 1) / 2,
        "token_mean": -(2 + 1 - 1) / 3,
        "sequence_mean": -(3 / 2 - 1) / 2,
    }
    assert loss.item() == pytest.approx(expected_value[normalization], rel=1e-12)
    loss.backward()
    expected_grad = -torch.tensor(ADVANTAGES, dtype=torch.float64) * MASK * TOKEN_WEIGHT[normalization]
    assert_close(logprobs.grad, expected_grad)
    reference_logprobs = torch.tensor(LOGPROBS, dtype=torch.float64, requires_grad=True)
    policy_gradient_loss(reference_logprobs, advantages, MASK, normalization).backward()
    assert_close(logprobs.grad, reference_logprobs.grad)


def test_infinite_logprobs_on_padding_do_not_leak() -> None:
    logprobs = torch.tensor([[-1.0, float("-inf")]])
    advantages = torch.tensor([[1.0, 0.0]])
    loss = policy_gradient_loss(logprobs, advantages, torch.tensor([[1.0, 0.0]]), "sum")
    assert loss.item() == pytest.approx(1.0)
