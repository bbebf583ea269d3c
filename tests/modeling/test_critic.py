"""CodeRL's critic: per-token outcome logits, masked max-pooling, values, save/load, learning."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import ByT5Tokenizer

from actors.config import PolicyConfig
from actors.policy import Policy
from coderl.outcomes import OutcomeClass, Verdict
from coderl.problem import Problem
from critic.config import CriticConfig
from critic.loss import pass_probabilities, token_values
from critic.model import Critic, critic_label
from critic.training import CriticExample, critic_batch, critic_step, evaluate_critic
from learner.config import OptimizerConfig
from learner.sft import make_optimizer
from models.sequences import TokenBatch, pad_left, pad_right
from models.tokenizer import suite_tokenizer

from .conftest import labelled_solutions


@pytest.fixture(params=["tiny", "tiny-causal"])
def critic(request: pytest.FixtureRequest) -> Critic:
    return Critic.load(CriticConfig(model=request.param, device="cpu"))


def _batch(prompts: list[list[int]], programs: list[list[int]]) -> TokenBatch:
    return TokenBatch(*pad_left(prompts, 0), *pad_right(programs, 0))


def test_shapes_and_pooling_ignore_padding(critic: Critic) -> None:
    prompts, programs = [[5, 6, 7], [8]], [[10, 11, 12, 13, 1], [14, 1]]
    with torch.no_grad():
        both = critic(_batch(prompts, programs))
        alone = critic(_batch(prompts[1:], programs[1:]))
    assert both.token_logits.shape == (2, 5, 4)
    assert both.program_logits.shape == (2, 4)
    torch.testing.assert_close(both.program_logits[1], alone.program_logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.program_logits[0], both.token_logits[0].max(dim=0).values)


def test_token_state_j_sees_w1_to_wj_and_nothing_after(critic: Critic) -> None:
    base = [10, 11, 12, 13, 1]
    changed_later = [10, 11, 12, 99, 1]
    changed_here = [10, 11, 99, 13, 1]
    with torch.no_grad():
        logits = critic(_batch([[5, 6]] * 3, [base, changed_later, changed_here])).token_logits
    torch.testing.assert_close(logits[0, :3], logits[1, :3])  # w_4 changed: v_1..v_3 unchanged
    assert not torch.allclose(logits[0, 2], logits[2, 2])  # w_3 changed: v_3 sees it


def test_labels_follow_codes_rl_classes() -> None:
    assert critic_label(Verdict.COMPILE_ERROR) == OutcomeClass.COMPILE_ERROR == 0
    assert critic_label(Verdict.TIMEOUT) == OutcomeClass.RUNTIME_ERROR == 1
    assert critic_label(Verdict.FAILED_TEST) == 2
    assert critic_label(Verdict.PASSED) == 3
    assert critic_label(Verdict.PASSED, "binary") == 1
    assert critic_label(Verdict.FAILED_TEST, "binary") == 0
    with pytest.raises(ValueError):
        critic_label(Verdict.SANDBOX_ERROR)


def test_values_are_the_probability_of_the_actual_class(critic: Critic) -> None:
    batch = _batch([[5, 6]], [[10, 11, 1]])
    with torch.no_grad():
        out = critic(batch)
    values = token_values(out.token_logits, torch.tensor([2]), batch.response_mask)
    expected = out.token_logits.softmax(-1)[0, :, 2]
    torch.testing.assert_close(values[0], expected)
    torch.testing.assert_close(
        pass_probabilities(out.token_logits, batch.response_mask)[0], out.token_logits.softmax(-1)[0, :, 3]
    )


def test_save_and_load_keep_the_head(critic: Critic, tmp_path: Path) -> None:
    batch = _batch([[5, 6]], [[10, 11, 1]])
    with torch.no_grad():
        critic.head[2].bias.add_(0.5)
        expected = critic(batch).program_logits
    out = critic.save(tmp_path / "critic")
    reloaded = Critic.load(CriticConfig(model=str(out), device="cpu"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch).program_logits, expected)


def test_binary_critic_has_two_classes_and_survives_a_reload(tmp_path: Path) -> None:
    binary = Critic.load(CriticConfig(classes="binary", device="cpu"))
    out = binary.save(tmp_path / "binary")
    reloaded = Critic.load(CriticConfig(model=str(out), device="cpu"))  # classes come from the checkpoint
    assert reloaded.config.num_classes == 2
    with torch.no_grad():
        assert reloaded(_batch([[5]], [[6, 1]])).program_logits.shape == (1, 2)


def test_a_different_tokenizer_is_refused(critic: Critic) -> None:
    critic.check_tokenizer(suite_tokenizer())
    with pytest.raises(ValueError, match="differs from the policy"):
        critic.check_tokenizer(ByT5Tokenizer())
    with pytest.raises(ValueError, match="differs from the policy"):
        critic.check_tokenizer(suite_tokenizer(vocab_size=300))


@pytest.mark.slow
def test_critic_learns_outcomes_beyond_the_majority_baseline() -> None:
    """Toy outcomes: the operator in a program decides its class; the critic must learn that."""
    critic = Critic.load(CriticConfig(device="cpu"))
    tokenizer = critic.tokenizer
    rng = random.Random(0)
    outcome_of_operator = {"+": 3, "-": 2, "*": 2, "/": 1}
    examples = []
    for _ in range(64):
        op = rng.choice("+-*/")
        program = f"n = int(input())\nprint(n {op} {rng.randrange(10)})\n"
        ids = tokenizer(program)["input_ids"]
        examples.append(CriticExample(tokenizer("Add to n.")["input_ids"], ids, outcome_of_operator[op]))
    train, held_out = examples[:48], examples[48:]
    before = evaluate_critic(critic, held_out)
    optimizer = make_optimizer(critic.parameters(), OptimizerConfig(lr=3e-3))
    for _ in range(120):
        critic_step(critic, optimizer, *critic_batch(critic, rng.sample(train, 16)), max_grad_norm=1.0)
    after = evaluate_critic(critic, held_out)
    assert after.accuracy >= 0.9 > after.majority_accuracy
    assert after.accuracy > before.accuracy
    assert sum(map(sum, after.confusion)) == len(held_out)


def test_a_micro_batched_critic_step_is_the_same_step_as_one_pass(add_problems: list[Problem]) -> None:
    policy = Policy.load(PolicyConfig(model="tiny", device="cpu"))
    examples = labelled_solutions(policy, add_problems)
    results = []
    for micro in (None, [slice(0, 1), slice(1, 3), slice(3, 4)]):
        critic = Critic.load(CriticConfig(device="cpu", seed=5))
        optimizer = torch.optim.SGD(critic.parameters(), lr=0.1)
        stats = critic_step(critic, optimizer, *critic_batch(critic, examples), 100.0, micro)
        results.append((stats, {k: v.detach().clone() for k, v in critic.state_dict().items()}))
    (whole, before), (split, after) = results
    assert split["loss/critic"] == pytest.approx(whole["loss/critic"], rel=1e-5)
    assert split["critic/batch_accuracy"] == whole["critic/batch_accuracy"]
    for name, weight in before.items():
        torch.testing.assert_close(after[name], weight, rtol=1e-4, atol=1e-6, msg=name)
