"""The static decode path (actors/static_decode.py): the same tokens and log-probs as ``sample_tokens``
and as a teacher-forced pass, with rows refilled as they finish, for both tiny presets."""

from __future__ import annotations

import pytest
import torch

from actors.config import SamplingConfig
from actors.policy import Policy
from actors.sampling import nucleus_logprobs, sample_tokens
from actors.static_batch import static_sample_tokens
from actors.static_cache import cross_keys_values
from actors.static_decode import ContinuousDecoder, DecodedRow, DecodeRequest
from models.sequences import pad_left, pad_right, response_logits, response_logprobs
from problems import Problem

NEVER_EOS = -1
"""an EOS id no token has: every row decodes its whole budget"""


def _prompts(policy: Policy, problems: list[Problem]) -> list[list[int]]:
    """The problems' prompts, and shorter cuts of them: prompts of many lengths."""
    full = [policy.prompt_token_ids(problem) for problem in problems]
    return full + [ids[-length:] for ids, length in zip(full, (1, 5, 17, 30), strict=False)]


def _requests(policy: Policy, prompts: list[list[int]]) -> list[DecodeRequest]:
    """Every third row is forced to end early (a prefix ending with EOS) and others get a plain
    prefix, so rows finish at different steps and their slots are refilled mid-decode."""
    solution = policy.program_token_ids("n = int(input())\nprint(n + 1)\n")
    requests = []
    for index, prompt in enumerate(prompts):
        prefix = solution[: index % 4]
        if index % 3 == 0:
            prefix = [*solution[: index % 5], policy.eos_id]
        requests.append(DecodeRequest(prompt, prefix, meta=index))
    return requests


def _decode(
    policy: Policy,
    requests: list[DecodeRequest],
    params: SamplingConfig,
    slots: int,
    static_shapes: bool = False,
) -> list[DecodedRow]:
    decoder = ContinuousDecoder(
        policy.model,
        params,
        policy.eos_id,
        policy.pad_id,
        slots=slots,
        max_prompt_tokens=policy.config.max_prompt_tokens,
        generator=torch.Generator().manual_seed(3),
        slack=3,  # a small buffer: the caches are compacted several times
        refill_at=2,  # new rows join two at a time: encoded or prefilled together, left-padded
        static_shapes=static_shapes,
    )
    rows = list(decoder.decode(requests))
    metas = [row.request.meta for row in rows]
    assert sorted(metas) == sorted(request.meta for request in requests)
    if len(requests) > slots:
        assert decoder.compactions > 0
        assert decoder.refills > 0
    return sorted(rows, key=lambda row: row.request.meta)


def _teacher_forced(policy: Policy, rows: list[DecodedRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of each row's tokens, logits predicting them) from one pass over the whole batch."""
    batch = policy.batch([list(r.request.prompt_ids) for r in rows], [r.token_ids for r in rows])
    with torch.no_grad():
        return response_logprobs(policy.model, batch), response_logits(policy.model, batch).float()


def _check_against_teacher_forcing(policy: Policy, rows: list[DecodedRow], n: int) -> torch.Tensor:
    logprobs, logits = _teacher_forced(policy, rows)
    for i, row in enumerate(rows):
        length = len(row.token_ids)
        prefix = list(row.request.prefix_ids)
        assert 0 < length <= n
        assert row.token_ids[: len(prefix)] == prefix[:length]
        assert row.finished == (row.token_ids[-1] == policy.eos_id)
        assert row.finished or length == n
        assert policy.eos_id not in row.token_ids[:-1]
        assert row.sampling_logprobs[: len(prefix)] == [0.0] * min(len(prefix), length)
        torch.testing.assert_close(torch.tensor(row.logprobs), logprobs[i, :length], atol=1e-4, rtol=1e-4)
    return logits


STATIC_SHAPES = pytest.mark.parametrize("static_shapes", [False, True], ids=["narrow", "static-shapes"])
"""every step over the whole buffer (what a CUDA graph replays) or up to the shared column (CPU)"""


@STATIC_SHAPES
@pytest.mark.parametrize("eos", ["model", "never"])
@pytest.mark.parametrize("with_prefixes", [False, True])
def test_greedy_static_path_matches_sample_tokens(
    policy: Policy, add_problems: list[Problem], eos: str, with_prefixes: bool, static_shapes: bool
) -> None:
    eos_id = policy.eos_id if eos == "model" else NEVER_EOS
    prompts = _prompts(policy, add_problems)
    ids, mask = pad_left(prompts, policy.pad_id)
    prefixes = None
    if with_prefixes:
        seeds = [list(r.prefix_ids) for r in _requests(policy, prompts)]
        prefix_ids, prefix_mask = pad_right(seeds, policy.pad_id)
        prefixes = (prefix_ids, prefix_mask.sum(dim=1))
    params = SamplingConfig(temperature=0.0, max_new_tokens=16)
    expected = sample_tokens(policy.model, ids, mask, params, eos_id, policy.pad_id, prefixes=prefixes)
    static = static_sample_tokens(
        policy.model, ids, mask, params, eos_id, policy.pad_id, prefixes=prefixes, static_shapes=static_shapes
    )
    assert static.token_ids.tolist() == expected.token_ids.tolist()
    assert torch.equal(static.mask, expected.mask)
    assert torch.equal(static.finished, expected.finished)
    torch.testing.assert_close(static.logprobs, expected.logprobs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(static.sampling_logprobs, expected.sampling_logprobs, atol=0, rtol=0)


@STATIC_SHAPES
def test_refilled_rows_decode_as_they_would_alone(
    policy: Policy, add_problems: list[Problem], static_shapes: bool
) -> None:
    """More prompts than slots, of different lengths, ending at different steps: every row gets
    what it gets decoded alone, and its log-probs are those of a teacher-forced pass."""
    params = SamplingConfig(temperature=0.0, max_new_tokens=10)
    requests = _requests(policy, _prompts(policy, add_problems))
    together = _decode(policy, requests, params, slots=3, static_shapes=static_shapes)
    assert len({len(row.token_ids) for row in together}) > 1
    for row in together:
        alone = _decode(policy, [row.request], params, slots=1, static_shapes=not static_shapes)[0]
        assert row.token_ids == alone.token_ids
        assert row.finished == alone.finished
        torch.testing.assert_close(
            torch.tensor(row.logprobs), torch.tensor(alone.logprobs), atol=1e-4, rtol=1e-4
        )
    logits = _check_against_teacher_forcing(policy, together, params.max_new_tokens)
    for i, row in enumerate(together):  # greedy: every token after the prefix is the argmax
        start, length = len(row.request.prefix_ids), len(row.token_ids)
        assert row.token_ids[start:] == logits[i, start:length].argmax(dim=-1).tolist()


@STATIC_SHAPES
def test_sampled_rows_carry_true_and_warped_logprobs(
    policy: Policy, add_problems: list[Problem], static_shapes: bool
) -> None:
    params = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=12)
    requests = _requests(policy, _prompts(policy, add_problems))
    rows = _decode(policy, requests, params, slots=3, static_shapes=static_shapes)
    logits = _check_against_teacher_forcing(policy, rows, params.max_new_tokens)
    sampled = 0
    for i, row in enumerate(rows):
        start, length = len(row.request.prefix_ids), len(row.token_ids)
        if start >= length:
            continue
        warped = nucleus_logprobs(logits[i, start:length], params.temperature, params.top_p)
        chosen = torch.tensor(row.token_ids[start:])
        expected = warped.gather(1, chosen[:, None]).squeeze(1)
        torch.testing.assert_close(
            torch.tensor(row.sampling_logprobs[start:]), expected, atol=1e-4, rtol=1e-4
        )
        sampled += length - start
    assert sampled > 30


def test_prompts_longer_than_the_decoder_takes_are_refused(policy: Policy) -> None:
    decoder = ContinuousDecoder(
        policy.model,
        SamplingConfig(max_new_tokens=4),
        policy.eos_id,
        policy.pad_id,
        slots=2,
        max_prompt_tokens=8,
    )
    with pytest.raises(ValueError, match="raise max_prompt_tokens"):
        list(decoder.decode([DecodeRequest(list(range(3, 12)))]))


def test_t5_cross_attention_projections_match_a_decoder_pass(
    policy: Policy, add_problems: list[Problem]
) -> None:
    """The shortcut (each layer's key/value projections of the encoder's output) writes what the
    model's own attention code caches on a decoder pass, padding columns included."""
    if not policy.model.config.is_encoder_decoder:
        pytest.skip("cross-attention is the encoder-decoder's")
    ids, mask = pad_left(_prompts(policy, add_problems), policy.pad_id)
    with torch.no_grad():
        shortcut = cross_keys_values(policy.model, ids, mask)
        reference = cross_keys_values(policy.model, ids, mask, projections=False)
    assert len(shortcut) == len(reference) == policy.model.config.num_decoder_layers
    for (keys, values), (ref_keys, ref_values) in zip(shortcut, reference, strict=True):
        torch.testing.assert_close(keys, ref_keys)
        torch.testing.assert_close(values, ref_values)
