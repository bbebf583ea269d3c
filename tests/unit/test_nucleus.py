"""actors/sampling.py nucleus_logprobs: temperature and top-p on a 4-token vocabulary, by hand."""

from __future__ import annotations

from math import inf, log

import pytest
import torch
from torch.testing import assert_close

from actors.sampling import nucleus_logprobs


def logits_of(*probabilities: float) -> torch.Tensor:
    """One row of logits whose softmax is the given distribution."""
    return torch.tensor([[log(p) for p in probabilities]], dtype=torch.float64)


def expected_row(*probabilities: float) -> torch.Tensor:
    """The log of a hand-written distribution, 0 giving -inf."""
    return torch.tensor([[log(p) if p > 0 else -inf for p in probabilities]], dtype=torch.float64)


def test_top_p_one_keeps_the_whole_distribution() -> None:
    out = nucleus_logprobs(logits_of(0.5, 0.3, 0.15, 0.05), temperature=1.0, top_p=1.0)
    assert_close(out, expected_row(0.5, 0.3, 0.15, 0.05))


@pytest.mark.parametrize("top_p", [0.6, 0.75, 0.79])
def test_top_p_keeps_the_first_tokens_reaching_it(top_p: float) -> None:
    # sorted mass before each token: 0, 0.5, 0.8, 0.95. Kept: those with mass before < top_p, i.e.
    # 0.5 and 0.3 for 0.5 < top_p <= 0.8; renormalised: 0.5/0.8 = 0.625, 0.3/0.8 = 0.375
    out = nucleus_logprobs(logits_of(0.5, 0.3, 0.15, 0.05), temperature=1.0, top_p=top_p)
    assert_close(out, expected_row(0.625, 0.375, 0.0, 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_p_exactly_reached_by_two_tokens(dtype: torch.dtype) -> None:
    # 0.5 + 0.3 = 0.8 reaches top_p = 0.8: the smallest such set is the first two tokens
    logits = logits_of(0.5, 0.3, 0.15, 0.05).to(dtype)
    out = nucleus_logprobs(logits, temperature=1.0, top_p=0.8)
    assert_close(out, expected_row(0.625, 0.375, 0.0, 0.0).to(dtype))


def test_top_p_just_above_a_boundary_keeps_one_more() -> None:
    # top_p = 0.85 > 0.8: the third token (mass before 0.8) is kept too; (0.5, 0.3, 0.15) / 0.95
    out = nucleus_logprobs(logits_of(0.5, 0.3, 0.15, 0.05), temperature=1.0, top_p=0.85)
    assert_close(out, expected_row(0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0))


def test_the_cut_follows_probability_not_vocabulary_order() -> None:
    # the same distribution shuffled: ids 1 (0.5) and 3 (0.3) survive top_p = 0.75
    out = nucleus_logprobs(logits_of(0.15, 0.5, 0.05, 0.3), temperature=1.0, top_p=0.75)
    assert_close(out, expected_row(0.0, 0.625, 0.0, 0.375))


@pytest.mark.parametrize("top_p", [1e-6, 0.3, 0.5])
def test_the_most_likely_token_is_always_kept(top_p: float) -> None:
    # the top token alone has mass 0.5 >= top_p: it gets probability 1, log 0
    out = nucleus_logprobs(logits_of(0.3, 0.5, 0.15, 0.05), temperature=1.0, top_p=top_p)
    assert_close(out, expected_row(0.0, 1.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("temperature", "probabilities"),
    [
        # logits (2 ln 4, 2 ln 2, 0, 0): exp(logits / T)
        (1.0, (16 / 22, 4 / 22, 1 / 22, 1 / 22)),  # (16, 4, 1, 1) / 22
        (2.0, (4 / 8, 2 / 8, 1 / 8, 1 / 8)),  # (4, 2, 1, 1) / 8
        (0.5, (256 / 274, 16 / 274, 1 / 274, 1 / 274)),  # (256, 16, 1, 1) / 274
    ],
)
def test_temperature_scales_the_logits(temperature: float, probabilities: tuple[float, ...]) -> None:
    logits = torch.tensor([[2 * log(4), 2 * log(2), 0.0, 0.0]], dtype=torch.float64)
    out = nucleus_logprobs(logits, temperature=temperature, top_p=1.0)
    assert_close(out, expected_row(*probabilities))


def test_temperature_is_applied_before_the_cut() -> None:
    # at T = 2 the distribution is (0.5, 0.25, 0.125, 0.125); mass before: 0, 0.5, 0.75, 0.875.
    # top_p = 0.7 keeps the first two: (0.5, 0.25) / 0.75 = (2/3, 1/3). At T = 1 it would be
    # (16, 4, 1, 1)/22, whose mass before is 0, 0.727..: the top token alone.
    logits = torch.tensor([[2 * log(4), 2 * log(2), 0.0, 0.0]], dtype=torch.float64)
    assert_close(nucleus_logprobs(logits, temperature=2.0, top_p=0.7), expected_row(2 / 3, 1 / 3, 0.0, 0.0))
    assert_close(nucleus_logprobs(logits, temperature=1.0, top_p=0.7), expected_row(1.0, 0.0, 0.0, 0.0))


def test_rows_are_cut_independently() -> None:
    logits = torch.cat([logits_of(0.5, 0.3, 0.15, 0.05), logits_of(0.05, 0.15, 0.3, 0.5)])
    logits[1] += 3.0  # a constant shift of a row's logits changes nothing
    out = nucleus_logprobs(logits, temperature=1.0, top_p=0.9)
    # mass before 0, 0.5, 0.8, 0.95: three tokens, (0.5, 0.3, 0.15) / 0.95
    expected = torch.cat(
        [
            expected_row(0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0),
            expected_row(0.0, 0.15 / 0.95, 0.3 / 0.95, 0.5 / 0.95),
        ]
    )
    assert_close(out, expected)


def test_float32_result_is_a_distribution() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 10.0]])
    out = nucleus_logprobs(logits, temperature=0.7, top_p=0.9)
    assert out.dtype == torch.float32
    assert_close(out.exp().sum(dim=-1), torch.ones(2))
    # the second row is dominated by its last token (p > 0.999 at T = 0.7): only it survives
    assert out[1].tolist() == [-inf, -inf, -inf, 0.0]
