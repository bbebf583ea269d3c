"""Critical sampling (driver/critical_sampling.py): the budget, the seeds, the branch the example
tests choose, and the repair prompt, with a real (tiny) critic and a scripted generator."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from actors.config import SamplingConfig
from coderl.execution import ErrorInfo, ExecutionResult
from coderl.outcomes import Verdict
from coderl.problem import Problem, TestCase
from coderl.wire import SampledProgram
from critic.config import CriticConfig
from critic.loss import pass_probabilities
from critic.model import Critic
from driver.critical_sampling import CriticalSampler, best_prefix_length, spread_budget, stage_budgets
from models.sequences import TokenBatch, pad_left, pad_right

EOS = 1
PROMPT = [5, 6, 7]


def test_stage_budgets_split_n_with_the_remainder_first() -> None:
    assert stage_budgets(10, 1) == [5, 5]
    assert stage_budgets(7, 2) == [3, 2, 2]
    assert stage_budgets(1, 1) == [1, 0]
    assert stage_budgets(4, 0) == [4]
    with pytest.raises(ValueError):
        stage_budgets(0, 1)


def test_spread_budget_gives_the_best_seeds_the_remainder() -> None:
    assert spread_budget(5, 2) == [3, 2]
    assert spread_budget(2, 3) == [1, 1, 0]
    assert spread_budget(4, 0) == []
    assert sum(spread_budget(17, 5)) == 17


def test_best_prefix_length_is_the_first_argmax() -> None:
    assert best_prefix_length([0.1, 0.5, 0.5, 0.2]) == 2
    assert best_prefix_length([0.9]) == 1
    with pytest.raises(ValueError):
        best_prefix_length([])


class ScriptedPolicy:
    """Programs 'good' or 'bad' in turn (from the token ids it is given to continue)."""

    def __init__(self, good_every: int) -> None:
        self.good_every = good_every
        self.calls: list[tuple[str, int, list[list[int]] | None, str]] = []
        self.count = 0

    def prompt_token_ids(self, problem: Problem) -> list[int]:
        return list(PROMPT)

    def sample(
        self,
        problems: Sequence[Problem],
        params: SamplingConfig,
        round_id: str = "",
        prefixes: Sequence[Sequence[int]] | None = None,
    ) -> list[SampledProgram]:
        (problem,) = problems
        self.calls.append(
            (round_id, params.n, [list(p) for p in prefixes] if prefixes else None, problem.statement)
        )
        out = []
        for index in range(params.n):
            self.count += 1
            good = self.good_every > 0 and self.count % self.good_every == 0
            prefix = list(prefixes[0]) if prefixes else []
            tokens = [*prefix, 10 + self.count % 7, 11, 12 + int(good), EOS]
            out.append(
                SampledProgram(
                    sample_id=f"{problem.task_id}{round_id}/sample{index}",
                    task_id=problem.task_id,
                    group_id=f"{problem.task_id}{round_id}",
                    policy_version=0,
                    program="good\n" if good else f"bad {self.count}\n",
                    prompt_token_ids=list(PROMPT),
                    token_ids=tokens,
                    logprobs=[-1.0] * len(tokens),
                    sampling_logprobs=[-1.0] * len(tokens),
                    finished=True,
                )
            )
        return out


def _execute(programs: Sequence[tuple[Problem, str]], which: str) -> list[ExecutionResult]:
    def judged(program: str) -> ExecutionResult:
        if program.startswith("good"):
            return ExecutionResult(verdict=Verdict.PASSED)
        return ExecutionResult(
            verdict=Verdict.RUNTIME_ERROR, error=ErrorInfo(type="ValueError", message="no")
        )

    return [judged(program) for _, program in programs]


def _problem(examples: bool = True) -> Problem:
    test = TestCase(kind="stdio", stdin="1\n", stdout="2\n")
    return Problem(
        task_id="p", statement="Print n + 1.", example_tests=[test] if examples else [], hidden_tests=[test]
    )


@pytest.fixture(scope="module")
def critic() -> Critic:
    return Critic.load(CriticConfig(model="tiny", classes="binary", device="cpu", seed=3))


def _scores(critic: Critic, programs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    prompt_ids, prompt_mask = pad_left([PROMPT] * len(programs), 0)
    ids, mask = pad_right(programs, 0)
    batch = TokenBatch(prompt_ids, prompt_mask, ids, mask)
    with torch.no_grad():
        out = critic.eval()(batch)
    return pass_probabilities(out.token_logits, mask), out.program_logits.softmax(-1)[:, -1]


def test_refining_seeds_from_the_best_prefixes_of_passing_programs(critic: Critic) -> None:
    policy = ScriptedPolicy(good_every=2)
    sampler = CriticalSampler(policy, _execute, SamplingConfig(seed=1), critic=critic, rounds=1)
    pool = sampler.run(_problem(), n=8, seed=4)
    assert len(pool) == 8 and [c.origin for c in pool] == ["sampled"] * 4 + ["refined"] * 4
    assert sampler.stats == {"refine_rounds": 1}
    passing = [c.sample.token_ids for c in pool[:4] if c.passed_examples]
    assert len(passing) == 2
    token_scores, _ = _scores(critic, passing)
    expected = []
    for row, tokens in enumerate(passing):  # the seed never ends with EOS
        usable = token_scores[row, : len(tokens) - 1].tolist()
        expected.append((max(usable), tokens[: best_prefix_length(usable)]))
    expected.sort(key=lambda e: -e[0])
    refine_calls = [call for call in policy.calls if call[2] is not None]
    assert [(n, prefixes[0]) for _, n, prefixes, _ in refine_calls] == [
        (2, expected[0][1]),
        (2, expected[1][1]),
    ]
    for candidate in pool[4:]:  # regenerated from a seed, judged on both test sets
        assert candidate.round == 1 and candidate.hidden is not None and candidate.example is not None


def test_repairing_the_critics_best_failed_program(critic: Critic) -> None:
    policy, repairer = ScriptedPolicy(good_every=0), ScriptedPolicy(good_every=1)
    sampler = CriticalSampler(
        policy, _execute, SamplingConfig(), critic=critic, repair_model=repairer, rounds=1
    )
    pool = sampler.run(_problem(), n=6, seed=None)
    assert [c.origin for c in pool] == ["sampled"] * 3 + ["repaired"] * 3
    assert all(c.hidden is not None and c.hidden.passed for c in pool[3:])
    _, program_scores = _scores(critic, [c.sample.token_ids for c in pool[:3]])
    best = pool[int(program_scores.argmax())].sample.program
    ((_, n, prefixes, statement),) = repairer.calls
    assert n == 3 and prefixes is None
    assert statement.startswith("Print n + 1.") and best.strip() in statement
    assert "RUNTIME_ERROR (ValueError: no)" in statement


def test_without_example_tests_or_a_critic_the_budget_is_sampled_plainly(critic: Critic) -> None:
    sampler = CriticalSampler(ScriptedPolicy(2), _execute, SamplingConfig(), critic=critic, rounds=2)
    pool = sampler.run(_problem(examples=False), n=7, seed=0)
    assert [c.origin for c in pool] == ["sampled"] * 7 and sampler.stats == {"plain_rounds": 2}
    assert all(c.example is None for c in pool)
    plain = CriticalSampler(ScriptedPolicy(2), _execute, SamplingConfig(), critic=None, rounds=3)
    assert [c.round for c in plain.run(_problem(), n=5, seed=0)] == [0] * 5
