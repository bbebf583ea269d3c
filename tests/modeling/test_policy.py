"""The policy: exact sampled ids and log-probs, padding invariance, reproducibility, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from actors.config import PolicyConfig, SamplingConfig
from actors.policy import POLICY_FILE, Policy
from actors.sampling import sample_tokens
from models.loading import PRESETS, load_model, resolve_device
from models.sequences import TokenBatch, pad_left, pad_right, response_logits, response_logprobs
from problems import Problem


def _forward_logprobs(policy: Policy, samples: list) -> torch.Tensor:
    batch = policy.batch([s.prompt_token_ids for s in samples], [s.token_ids for s in samples])
    with torch.no_grad():
        return response_logprobs(policy.model, batch)


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.6, 0.95), (0.0, 1.0)])
def test_returned_logprobs_match_a_separate_forward_pass(
    policy: Policy, add_problems: list[Problem], temperature: float, top_p: float
) -> None:
    params = SamplingConfig(n=3, temperature=temperature, top_p=top_p, max_new_tokens=24, batch_size=5)
    samples = policy.sample(add_problems, params)
    assert len(samples) == len(add_problems) * 3
    forward = _forward_logprobs(policy, samples)
    for row, sample in enumerate(samples):
        length = len(sample.token_ids)
        assert length == len(sample.logprobs) == len(sample.sampling_logprobs) > 0
        torch.testing.assert_close(torch.tensor(sample.logprobs), forward[row, :length], atol=1e-4, rtol=1e-4)
        assert all(lp <= 0 for lp in sample.logprobs)


def test_sampling_logprobs_follow_the_warped_distribution(
    policy: Policy, add_problems: list[Problem]
) -> None:
    """At temperature < 1 and top-p < 1 the sampled tokens are more likely under the warped law."""
    samples = policy.sample(add_problems, SamplingConfig(n=2, temperature=0.5, top_p=0.9, max_new_tokens=24))
    raw = sum(sum(s.logprobs) for s in samples)
    warped = sum(sum(s.sampling_logprobs) for s in samples)
    assert warped > raw


def test_greedy_picks_the_argmax_and_is_independent_of_batch_companions(
    policy: Policy, add_problems: list[Problem]
) -> None:
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=20)
    problems = [*add_problems, Problem(task_id="longer", statement="Print the sum of two integers a and b.")]
    together = policy.sample(problems, greedy)
    alone = [policy.sample([problem], greedy)[0] for problem in problems]
    # Prompts of different lengths are left-padded together: padding must not change the result.
    assert len({len(p) for p in (s.prompt_token_ids for s in together)}) > 1
    assert [s.token_ids for s in together] == [s.token_ids for s in alone]
    assert all(s.is_greedy and s.sample_id.endswith("/greedy0") for s in together)
    logits_top = _forward_logprobs(policy, together)
    for row, sample in enumerate(together):
        batch = policy.batch([sample.prompt_token_ids], [sample.token_ids])
        with torch.no_grad():
            best = response_logits(policy.model, batch)[0].argmax(dim=-1)
        assert best.tolist() == sample.token_ids
        assert logits_top[row, : len(sample.token_ids)].sum().item() == pytest.approx(
            sum(sample.logprobs), abs=1e-3
        )


def test_seeded_sampling_is_reproducible_and_seeds_differ(
    policy: Policy, add_problems: list[Problem]
) -> None:
    params = SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7)
    first = [s.token_ids for s in policy.sample(add_problems, params)]
    again = [s.token_ids for s in policy.sample(add_problems, params)]
    other = [s.token_ids for s in policy.sample(add_problems, params.model_copy(update={"seed": 8}))]
    assert first == again
    assert first != other


def test_finished_samples_end_with_eos_and_budget_is_respected(
    policy: Policy, add_problems: list[Problem]
) -> None:
    samples = policy.sample(add_problems, SamplingConfig(n=4, temperature=1.0, top_p=1.0, max_new_tokens=12))
    for sample in samples:
        assert len(sample.token_ids) <= 12
        assert policy.eos_id not in sample.token_ids[:-1]
        assert sample.finished == (sample.token_ids[-1] == policy.eos_id)
        assert sample.finished or len(sample.token_ids) == 12


def test_sample_ids_are_unique_per_round_and_carry_the_version(
    policy: Policy, add_problems: list[Problem]
) -> None:
    policy.version = 5
    params = SamplingConfig(n=2, max_new_tokens=4)
    ids = [s.sample_id for s in policy.sample(add_problems, params, round_id="r0")]
    ids += [s.sample_id for s in policy.sample(add_problems, params, round_id="r1")]
    assert len(set(ids)) == len(ids) == 16
    assert ids[0] == "add-0/v5r0/sample0"


def test_sampling_restores_training_mode(policy: Policy, add_problems: list[Problem]) -> None:
    policy.model.train()
    policy.sample(add_problems[:1], SamplingConfig(max_new_tokens=2))
    assert policy.model.training


def test_left_padding_does_not_change_teacher_forced_logprobs(policy: Policy) -> None:
    prompts, responses = [[5, 6, 7, 8, 9], [10, 11]], [[20, 21, 1], [22, 1]]
    both = policy.batch(prompts, responses)
    with torch.no_grad():
        batched = response_logprobs(policy.model, both)
        single = response_logprobs(policy.model, policy.batch(prompts[1:], responses[1:]))
    torch.testing.assert_close(batched[1, :2], single[0], atol=1e-5, rtol=1e-5)
    assert batched[1, 2].item() == 0.0  # padding


def test_sample_tokens_stops_early_when_every_row_is_done() -> None:
    loaded = load_model("tiny-causal", device="cpu")
    # Make EOS (id 1) overwhelmingly likely: the final layer norm outputs the unit vector e_0, and
    # the (tied) output embedding gives id 1 a logit of 100 along e_0 and every other id 0.
    with torch.no_grad():
        final_norm = loaded.model.transformer.ln_f
        final_norm.weight.zero_()
        final_norm.bias.zero_()
        final_norm.bias[0] = 1.0
        loaded.model.lm_head.weight[:, 0] = 0.0
        loaded.model.lm_head.weight[1, 0] = 100.0
    ids, mask = pad_left([[5, 6], [7]], 0)
    out = sample_tokens(loaded.model, ids, mask, SamplingConfig(max_new_tokens=50, temperature=1.0), 1, 0)
    assert out.token_ids.shape == (2, 1)
    assert out.finished.all()


def test_save_then_load_with_from_pretrained(policy: Policy, tmp_path: Path) -> None:
    policy.version = 42
    out = policy.save(tmp_path / "ckpt")
    assert json.loads((out / POLICY_FILE).read_text())["policy_version"] == 42
    reloaded = Policy.load(PolicyConfig(model=str(out), device="cpu"))
    assert reloaded.version == 42
    assert reloaded.is_encoder_decoder == policy.is_encoder_decoder
    # The plain transformers path reads the same directory, tokenizer included.
    model_cls = AutoModelForSeq2SeqLM if policy.is_encoder_decoder else AutoModelForCausalLM
    plain = model_cls.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer("print(1)")["input_ids"] == policy.tokenizer("print(1)")["input_ids"]
    batch = TokenBatch(*pad_left([[5, 6, 7]], 0), *pad_right([[8, 9, 1]], 0))
    with torch.no_grad():
        expected = response_logprobs(policy.model, batch)
        torch.testing.assert_close(response_logprobs(reloaded.model, batch), expected)
        torch.testing.assert_close(response_logprobs(plain, batch), expected)


def test_presets_are_seeded_and_distinct() -> None:
    a = load_model("tiny", device="cpu", seed=1).model.state_dict()
    b = load_model("tiny", device="cpu", seed=1).model.state_dict()
    c = load_model("tiny", device="cpu", seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert {"tiny", "tiny-causal", "t5-small-random"} <= set(PRESETS)


def test_missing_model_directory_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="preset"):
        load_model(str(tmp_path / "nope"))


def test_cuda_asked_for_without_cuda_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA"):
        resolve_device("cuda")


def test_long_prompts_keep_their_end(policy: Policy) -> None:
    problem = Problem(task_id="long", statement="x" * 5000)
    ids = policy.prompt_token_ids(problem)
    assert len(ids) == policy.config.max_prompt_tokens
    assert policy.decode(ids).endswith("ANSWER:\n")


def test_load_weights_swaps_weights_and_version(policy: Policy) -> None:
    other = load_model(policy.config.model, device="cpu", seed=99).model.state_dict()
    policy.load_weights(other, version=3)
    assert policy.version == 3
    assert all(torch.equal(policy.model.state_dict()[k], other[k]) for k in other)


def test_packed_weights_swap_weights_and_carry_the_version(policy: Policy) -> None:
    model = load_model(policy.config.model, device="cpu", seed=99).model
    other = Policy(model, policy.tokenizer, policy.config, version=5)
    packed = other.packed_weights()
    assert packed.version == 5
    policy.load_packed(packed)
    assert policy.version == 5
    expected = other.model.state_dict()
    assert all(torch.equal(policy.model.state_dict()[k], expected[k]) for k in expected)
    # Tied embeddings (T5's shared/lm_head, GPT-2's wte/lm_head) travel once.
    assert packed.nbytes < sum(t.numel() * t.element_size() for t in expected.values())


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_programs_continue_from_a_given_prefix(
    policy: Policy, add_problems: list[Problem], temperature: float
) -> None:
    """Critical sampling's seeds: every program starts with its prefix, the forced tokens carry
    their true log-probs (a teacher-forced pass gives the same) and a sampling log-prob of 0, and
    the suffix is decoded from the prefix's context."""
    seed_ids = [
        policy.program_token_ids(p.solutions[0])[:length]
        for p, length in zip(add_problems, (3, 0, 7, 5), strict=True)
    ]
    params = SamplingConfig(n=2, temperature=temperature, max_new_tokens=16, batch_size=3, seed=5)
    samples = policy.sample(add_problems, params, round_id="/refine", prefixes=seed_ids)
    assert len(samples) == 8
    forward = _forward_logprobs(policy, samples)
    for row, sample in enumerate(samples):
        prefix = seed_ids[row // 2]
        assert sample.token_ids[: len(prefix)] == prefix
        assert sample.sampling_logprobs[: len(prefix)] == [0.0] * len(prefix)
        length = len(sample.token_ids)
        assert length > len(prefix) or length == params.max_new_tokens
        torch.testing.assert_close(torch.tensor(sample.logprobs), forward[row, :length], atol=1e-4, rtol=1e-4)
    if temperature == 0.0:  # greedy: each suffix token is the argmax given the prefix and before
        batch = policy.batch([s.prompt_token_ids for s in samples], [s.token_ids for s in samples])
        with torch.no_grad():
            best = response_logits(policy.model, batch).argmax(dim=-1)
        for row, sample in enumerate(samples):
            start, length = len(seed_ids[row // 2]), len(sample.token_ids)
            assert sample.token_ids[start:] == best[row, start:length].tolist()


def test_repeated_problems_with_prefixes_get_distinct_sample_ids(
    policy: Policy, add_problems: list[Problem]
) -> None:
    seeds = [policy.program_token_ids(add_problems[0].solutions[0])[:n] for n in (2, 4)]
    params = SamplingConfig(n=3, temperature=1.0, max_new_tokens=8)
    samples = policy.sample([add_problems[0]] * 2, params, round_id="/r1", prefixes=seeds)
    assert len({s.sample_id for s in samples}) == 6
    assert [s.sample_id.rsplit("/", 1)[1] for s in samples] == [f"sample{i}" for i in range(6)]
    with pytest.raises(ValueError, match="2 prefixes for 1 problems"):
        policy.sample([add_problems[0]], params, prefixes=seeds)
