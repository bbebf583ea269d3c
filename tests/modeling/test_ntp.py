"""The NTP warm-start objective (learner/ntp.py): the pivot, the split, and the loss the trainer
takes on it, against the cross-entropy of the decoder's target computed by hand."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from actors.config import PolicyConfig
from actors.policy import Policy
from learner.config import SFTConfig
from learner.ntp import CodeSample, code_samples, draw_pivot, ntp_split, python_files
from learner.sft import SFTExample, SFTTrainer, sft_examples, warm_start_examples
from models.sequences import response_logprobs

from .conftest import add_k_problem


def test_the_pivot_is_uniform_within_its_range() -> None:
    rng = random.Random(0)
    counts = Counter(draw_pivot(20, rng) for _ in range(17_000))
    assert sorted(counts) == list(range(2, 19))  # 10%..90% of 20 tokens
    assert max(counts.values()) / min(counts.values()) < 1.15
    assert {draw_pivot(2, rng) for _ in range(50)} == {1}  # one token on each side
    assert set(Counter(draw_pivot(10, rng, 0.0, 1.0) for _ in range(500))) == set(range(1, 10))
    with pytest.raises(ValueError):
        draw_pivot(1, rng)


def test_the_split_sends_the_code_before_the_pivot_to_the_encoder() -> None:
    assert ntp_split([1, 2, 3, 4, 5], 2, eos_id=9) == ([1, 2, 9], [3, 4, 5, 9])
    with pytest.raises(ValueError):
        ntp_split([1, 2], 2, eos_id=9)


def test_code_samples_come_in_windows_and_python_files_are_found(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    found = python_files([str(tmp_path)])
    assert [Path(name).name for name, _ in found] == ["b.py", "a.py"]
    samples = code_samples(
        [("f", "abcdefghijklmnopqrstu")], lambda text: [ord(c) for c in text], 8, min_tokens=4
    )
    assert [len(s.code_ids) for s in samples] == [8, 8, 5] and samples[1].task_id == "f@8"
    with pytest.raises(FileNotFoundError):
        python_files([str(tmp_path / "missing")])


def test_the_trainer_takes_the_decoders_cross_entropy_after_the_pivot() -> None:
    torch.manual_seed(0)
    policy = Policy.load(PolicyConfig(model="tiny", device="cpu", seed=3))
    problems = [add_k_problem(k) for k in range(6)]
    config = SFTConfig(objective="ntp", batch_size=4, seed=11)
    examples = warm_start_examples(policy, problems, sft_examples(policy, problems), config)
    assert examples and all(isinstance(e, CodeSample) for e in examples)
    trainer = SFTTrainer(policy, examples, config, total_steps=3)
    indices = trainer.order.batch(0)
    pairs = [trainer._pair(examples[i], i) for i in indices]
    for (encoder, target), i in zip(pairs, indices, strict=True):
        code = examples[i].code_ids
        assert encoder[:-1] + target[:-1] == code and encoder[-1] == target[-1] == policy.eos_id
        assert 0.1 * len(code) <= len(encoder) - 1 <= 0.9 * len(code)
    assert pairs == [trainer._pair(examples[i], i) for i in indices]  # keyed on (seed, step, index)
    batch = policy.batch([e for e, _ in pairs], [t for _, t in pairs])
    with torch.no_grad():
        logprobs = response_logprobs(policy.model, batch)
    expected = float(-(logprobs * batch.response_mask).sum() / batch.response_mask.sum())
    loss, count = trainer.step()
    assert count == 4 and loss == pytest.approx(expected, rel=1e-5)
    pivots = set()
    for step in range(40):  # a new pivot at every step
        trainer.steps_done = step
        pivots.add(len(trainer._pair(examples[0], 0)[0]))
    assert len(pivots) > 1


def test_program_and_ntp_mix_and_ntp_needs_an_encoder_decoder() -> None:
    problems = [add_k_problem(k) for k in range(3)]
    policy = Policy.load(PolicyConfig(model="tiny", device="cpu"))
    both = warm_start_examples(
        policy, problems, sft_examples(policy, problems), SFTConfig(objective="program+ntp")
    )
    assert Counter(type(e) for e in both) == {SFTExample: 3, CodeSample: 3}
    causal = Policy.load(PolicyConfig(model="tiny-causal", device="cpu"))
    with pytest.raises(ValueError, match="encoder-decoder"):
        warm_start_examples(causal, problems, sft_examples(causal, problems), SFTConfig(objective="ntp"))
    with pytest.raises(ValueError, match="ntp_pivot_range"):
        SFTConfig(ntp_pivot_range=(0.8, 0.2))
