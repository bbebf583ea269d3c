"""A static decoder kept across calls and weight loads (what a kept CUDA graph relies on), and the
check a captured graph must pass (actors/cuda_graph.py); the GPU half is in test_cuda.py."""

from __future__ import annotations

import pytest
import torch

from actors.config import PolicyConfig, SamplingConfig
from actors.cuda_graph import matches_eager
from actors.policy import Policy
from actors.sampling import sample_tokens
from actors.static_decode import ContinuousDecoder, DecodeRequest
from models.sequences import pad_left
from problems import Problem


def test_weights_load_into_the_same_storage(policy: Policy) -> None:
    """A broadcast copies into the model's own tensors: a graph captured over them reads the new
    weights on its next replay."""
    before = {name: p.data_ptr() for name, p in policy.model.named_parameters()}
    other = Policy.load(PolicyConfig(model=policy.config.model, device="cpu", seed=11))
    packed = other.packed_weights()
    policy.load_packed(packed)
    assert {name: p.data_ptr() for name, p in policy.model.named_parameters()} == before
    for name, weight in other.cpu_weights().items():
        torch.testing.assert_close(policy.model.state_dict()[name], weight, msg=name)


def test_a_kept_decoder_decodes_with_new_weights_and_new_params(
    policy: Policy, add_problems: list[Problem]
) -> None:
    prompts = [policy.prompt_token_ids(p) for p in add_problems]
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=12)
    decoder = ContinuousDecoder(
        policy.model, greedy, -1, policy.pad_id, slots=2, max_prompt_tokens=max(map(len, prompts))
    )
    requests = [DecodeRequest(prompt, meta=i) for i, prompt in enumerate(prompts)]
    policy.model.eval()

    def reference() -> tuple[list[list[int]], torch.Tensor]:
        ids, mask = pad_left(prompts, policy.pad_id)
        samples = sample_tokens(policy.model, ids, mask, greedy, -1, policy.pad_id)
        return samples.token_ids.tolist(), samples.logprobs

    def decoded(params: SamplingConfig = greedy) -> tuple[list[list[int]], torch.Tensor]:
        rows = sorted(decoder.decode(requests, params), key=lambda row: row.request.meta)
        return [row.token_ids for row in rows], torch.tensor([row.logprobs for row in rows])

    def check(got: tuple[list[list[int]], torch.Tensor]) -> torch.Tensor:
        tokens, logprobs = reference()
        assert got[0] == tokens
        torch.testing.assert_close(got[1], logprobs, atol=1e-4, rtol=1e-4)
        return logprobs

    first = check(decoded())
    other = Policy.load(PolicyConfig(model=policy.config.model, device="cpu", seed=11))
    policy.load_packed(other.packed_weights())
    second = check(decoded())
    assert not torch.allclose(first, second, atol=1e-3)  # the new weights were used
    sampled = decoded(SamplingConfig(temperature=1.0, max_new_tokens=12))[0]
    assert sampled != reference()[0]  # the new params (sampling, not greedy) took effect
    with pytest.raises(ValueError, match="hold 12 new tokens"):
        list(decoder.decode(requests, SamplingConfig(max_new_tokens=13)))


def test_cuda_graph_needs_static_shapes_on_cuda(policy: Policy) -> None:
    with pytest.raises(ValueError, match="CUDA graph"):
        ContinuousDecoder(policy.model, SamplingConfig(), 1, 0, slots=1, max_prompt_tokens=8, cuda_graph=True)
    decoder = ContinuousDecoder(policy.model, SamplingConfig(), 1, 0, slots=1, max_prompt_tokens=8)
    assert not decoder.use_graph and not decoder.static_shapes  # CPU: narrow steps, no graph


def test_a_replay_must_match_the_eager_step() -> None:
    eager = torch.tensor([[0.0, 2.0, 1.0], [3.0, -1.0, 0.5]])
    assert matches_eager(eager.clone(), eager)
    assert matches_eager(eager + 5e-4, eager)  # within 1e-3 + 1e-3 |e|
    assert not matches_eager(eager + torch.tensor([[0.0, 0.0, 0.01], [0.0, 0.0, 0.0]]), eager)
    near_tie = torch.tensor([[0.0, 2.0, 1.9995]])
    flipped = torch.tensor([[0.0, 1.9995, 2.0]])  # within tolerance, but another token is chosen
    assert torch.allclose(flipped, near_tie, atol=1e-3, rtol=1e-3)
    assert not matches_eager(flipped, near_tie)
    assert not matches_eager(eager[:1], eager)
    assert not matches_eager(torch.full_like(eager, float("nan")), eager)


def test_static_shapes_step_through_width_buckets(policy: Policy, add_problems: list[Problem]) -> None:
    """With static shapes a step attends over the smallest fixed width holding the shared column:
    several widths over one decode (one CUDA graph each on a GPU), each ending past the column."""
    prompts = [policy.prompt_token_ids(p) for p in add_problems]
    params = SamplingConfig(temperature=0.0, max_new_tokens=20)
    decoder = ContinuousDecoder(
        policy.model, params, -1, policy.pad_id, slots=4, max_prompt_tokens=max(map(len, prompts)),
        static_shapes=True,
    )  # fmt: skip
    seen: list[tuple[int, int]] = []
    eager = decoder._eager_forward

    def spy(width: int) -> torch.Tensor:
        seen.append((decoder.s, width))
        return eager(width)

    decoder._eager_forward = spy  # type: ignore[method-assign]
    policy.model.eval()
    rows = sorted(
        decoder.decode([DecodeRequest(p, meta=i) for i, p in enumerate(prompts)]),
        key=lambda r: r.request.meta,
    )
    assert len({width for _, width in seen}) == len(decoder.widths) > 1
    assert all(
        column < width and (width == min(w for w in decoder.widths if w > column)) for column, width in seen
    )
    ids, mask = pad_left(prompts, policy.pad_id)
    expected = sample_tokens(policy.model, ids, mask, params, -1, policy.pad_id)
    assert [row.token_ids for row in rows] == expected.token_ids.tolist()
