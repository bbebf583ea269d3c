"""The GPU paths of the sampler, learner and critic, checked against the same computation on CPU.

CI has no GPU, so these are skipped there; they run wherever CUDA is available (a GPU host, or the
device machine a session is lent): `python3 -m pytest -q -m gpu`. They catch what CPU-only tests
cannot: a tensor left on the wrong device, weights that do not travel between a GPU learner and CPU
samplers, an update that differs by device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from actors.config import PolicyConfig, SamplingConfig
from actors.policy import Policy
from coderl.outcomes import OutcomeClass, Verdict
from critic.config import CriticConfig
from critic.model import Critic
from critic.training import critic_batch, critic_step, critic_token_values
from learner.actor_update import actor_step
from learner.batch import ScoredSample, TrainBatch
from learner.config import ActorLossConfig, OptimizerConfig, SFTConfig
from learner.sft import make_optimizer, train_sft
from models.sequences import response_logprobs
from problems import Problem

from .conftest import labelled_solutions

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# Full fp32 on the GPU (no TF32) so that the CPU and GPU results can be compared closely.
TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}
FAST = OptimizerConfig(lr=3e-3)


@pytest.fixture(autouse=True)
def _ieee_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _pair(preset: str) -> tuple[Policy, Policy]:
    """The same randomly initialised preset on CPU and on the GPU."""
    cpu = Policy.load(PolicyConfig(model=preset, device="cpu", seed=3))
    gpu = Policy.load(PolicyConfig(model=preset, device="cuda", seed=3))
    return cpu, gpu


@pytest.mark.parametrize("preset", ["tiny", "tiny-causal"])
def test_greedy_decoding_on_the_gpu_matches_the_cpu(preset: str, add_problems: list[Problem]) -> None:
    cpu, gpu = _pair(preset)
    assert gpu.device.type == "cuda"
    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=24)
    on_cpu, on_gpu = cpu.sample(add_problems, greedy), gpu.sample(add_problems, greedy)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), **TOLERANCE)


@pytest.mark.parametrize("preset", ["tiny", "tiny-causal"])
def test_sampled_logprobs_are_what_the_gpu_learner_recomputes(
    preset: str, add_problems: list[Problem]
) -> None:
    _, gpu = _pair(preset)
    params = SamplingConfig(n=4, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=0)
    samples = gpu.sample(add_problems, params)
    batch = gpu.batch([s.prompt_token_ids for s in samples], [s.token_ids for s in samples])
    with torch.no_grad():
        recomputed = response_logprobs(gpu.model.eval(), batch)
    for row, sample in enumerate(samples):
        n = len(sample.token_ids)
        assert n > 0 and all(0 <= t < gpu.model.config.vocab_size for t in sample.token_ids)
        torch.testing.assert_close(recomputed[row, :n].cpu(), torch.tensor(sample.logprobs), **TOLERANCE)


@pytest.mark.parametrize("use_critic", [True, False])
def test_critic_weighted_update_on_the_gpu_equals_the_cpu_update(
    use_critic: bool, add_problems: list[Problem]
) -> None:
    cpu, gpu = _pair("tiny")
    samples = cpu.sample(add_problems[:2], SamplingConfig(n=2, temperature=1.0, max_new_tokens=16, seed=0))
    rewards = [1.0, -0.3, -0.6, 1.0]
    scored = [
        ScoredSample(
            s,
            Verdict.PASSED if r > 0 else Verdict.RUNTIME_ERROR,
            OutcomeClass.PASSED if r > 0 else OutcomeClass.RUNTIME_ERROR,
            r,
            baseline_reward=-0.3,
        )
        for s, r in zip(samples, rewards, strict=True)
    ]
    prompts = [cpu.prompt_token_ids(p) for p in add_problems[:2]]
    programs = [cpu.program_token_ids(p.solutions[0]) for p in add_problems[:2]]
    config = ActorLossConfig()
    updated = {}
    for name, policy in (("cpu", cpu), ("gpu", gpu)):
        batch = TrainBatch(list(scored))
        critic = Critic.load(CriticConfig(model="tiny", device=str(policy.device), seed=5))
        values = None
        if use_critic:
            tokens = batch.sampled_tokens(policy.pad_id, policy.device)
            values = critic_token_values(critic, tokens, batch.classes())
            assert values.device.type == policy.device.type
        optimizer = make_optimizer(policy.model.parameters(), OptimizerConfig(lr=1e-3))
        ground_truth = policy.batch(prompts, programs)
        stats = actor_step(policy, optimizer, batch, ground_truth, values, config, max_grad_norm=1.0)
        assert policy.version == 1 and stats["grad_norm"] > 0
        updated[name] = policy.cpu_weights()
    for key, weight in updated["cpu"].items():
        torch.testing.assert_close(updated["gpu"][key], weight, **TOLERANCE, msg=key)


def test_critic_step_on_the_gpu_equals_the_cpu_step(add_problems: list[Problem]) -> None:
    cpu_policy = Policy.load(PolicyConfig(model="tiny", device="cpu"))
    examples = labelled_solutions(cpu_policy, add_problems)
    results = []
    for device in ("cpu", "cuda"):
        critic = Critic.load(CriticConfig(model="tiny", device=device, seed=5))
        optimizer = make_optimizer(critic.parameters(), OptimizerConfig(lr=1e-3))
        first = critic_step(critic, optimizer, *critic_batch(critic, examples), max_grad_norm=1.0)
        second = critic_step(critic, optimizer, *critic_batch(critic, examples), max_grad_norm=1.0)
        results.append((first["loss/critic"], second["loss/critic"]))
    assert results[1] == pytest.approx(results[0], rel=1e-3)


def test_gpu_learner_weights_reach_a_cpu_sampler(tmp_path: Path, add_problems: list[Problem]) -> None:
    """The broadcast path: a GPU learner trains, its CPU copy of the weights loads into a CPU
    sampler, which then decodes exactly what the learner would; a checkpoint saved from the GPU
    loads on CPU with its version."""
    cpu, gpu = _pair("tiny")
    report = train_sft(gpu, add_problems, SFTConfig(batch_size=4, optimizer=FAST), 30)
    assert len(report.losses) == 30 and gpu.version == 30
    weights = gpu.cpu_weights()
    assert all(w.device.type == "cpu" for w in weights.values())
    cpu.load_weights(weights, gpu.version)
    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=24)
    assert [s.token_ids for s in cpu.sample(add_problems, greedy)] == [
        s.token_ids for s in gpu.sample(add_problems, greedy)
    ]
    gpu.save(tmp_path / "ckpt")
    reloaded = Policy.load(PolicyConfig(model=str(tmp_path / "ckpt"), device="cpu"))
    assert reloaded.version == 30
    for key, weight in weights.items():
        torch.testing.assert_close(reloaded.model.state_dict()[key], weight)


def test_bfloat16_policy_samples_and_trains_on_the_gpu(add_problems: list[Problem]) -> None:
    policy = Policy.load(PolicyConfig(model="tiny", device="cuda", dtype="bfloat16", seed=3))
    assert next(policy.model.parameters()).dtype == torch.bfloat16
    report = train_sft(policy, add_problems, SFTConfig(batch_size=4, optimizer=FAST), 40)
    assert report.losses[-1] < report.losses[0]
    samples = policy.sample(add_problems, SamplingConfig(n=2, temperature=1.0, max_new_tokens=16, seed=0))
    assert len(samples) == 8 and all(len(s.logprobs) == len(s.token_ids) for s in samples)


def test_bfloat16_decoding_stays_off_cudnn_attention(add_problems: list[Problem]) -> None:
    """cuDNN attention builds a plan per (batch, cache length) shape: about 79 ms per decoding step
    on a process's first bf16 decode on an H200, against 7 (actors/sampling.py)."""
    policy = Policy.load(PolicyConfig(model="tiny", device="cuda", dtype="bfloat16", seed=3))
    params = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, seed=0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        policy.sample(add_problems, params)
    ops = {event.key for event in profile.key_averages()}
    assert "aten::scaled_dot_product_attention" in ops  # the model does use SDPA
    assert not [op for op in ops if "cudnn_attention" in op]


@pytest.mark.parametrize("preset", ["tiny", "tiny-causal"])
def test_static_decoder_replays_a_cuda_graph_across_weight_loads(
    preset: str, add_problems: list[Problem]
) -> None:
    """On CUDA the sampler's default decoder captures its step once, checks the replay against an
    eager step, keeps it across calls, and replays it with weights loaded in place afterwards:
    each decode equals the growing-cache decoder's on the same weights."""
    _, gpu = _pair(preset)
    dynamic = Policy(gpu.model, gpu.tokenizer, PolicyConfig(model=preset, device="cuda", decoder="dynamic"))
    assert gpu.static_decoder and not dynamic.static_decoder
    greedy = SamplingConfig(n=2, temperature=0.0, max_new_tokens=24)

    def same(a: list, b: list) -> None:
        for x, y in zip(a, b, strict=True):
            assert x.token_ids == y.token_ids
            torch.testing.assert_close(torch.tensor(x.logprobs), torch.tensor(y.logprobs), **TOLERANCE)

    same(gpu.sample(add_problems, greedy), dynamic.sample(add_problems, greedy))
    [decoder] = gpu._decoders.values()
    graph = decoder.graph
    assert graph is not None, "the decode step was not captured (see the warning logged)"
    other = Policy.load(PolicyConfig(model=preset, device="cuda", seed=11))
    gpu.load_packed(other.packed_weights())
    same(gpu.sample(add_problems, greedy), dynamic.sample(add_problems, greedy))  # dynamic shares the model
    assert list(gpu._decoders.values()) == [decoder] and decoder.graph is graph  # no re-capture
