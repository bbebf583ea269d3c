"""Critical sampling (CodeRL section 3.3): sample, filter by the example tests, then refine from
critic-chosen prefixes of passing programs or repair the critic's best failing ones.

One problem at a time, with a budget of N generated programs, shared across its stages so that
critical and plain sampling are compared at equal cost: stage 0 samples, each of ``rounds`` later
stages refines (some program passed the example tests: P not empty) or repairs (none did), and
every generated program counts. Without a critic or example tests the later stages sample plainly.

- **Refining**: a binary critic scores each prefix of each passing program, q(w_t) = p(pass |
  w_1..t, problem) (its token logits at t see only w_1..t: the decoder is causal); the prefix up to
  the best-scored token, w_1..t_max, becomes a seed, and the policy regenerates the rest from it,
  the stage's budget spread over the seeds (best-scored seeds first).
- **Repairing**: the critic scores whole failed programs, q(W) = p(pass | W, problem); the top M go
  to the repair model with the problem, the failed program, its error type and message
  (``models.prompts.repair_problem``), which writes the fixed programs.

The example tests decide the branch and pick the seeds; the hidden tests are only ever read for
the report. The paper's code for this was never released (../shared/reference/coderl.md, section
4); the stage split and the seed ranking here are this project's reading of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from actors.config import SamplingConfig
from coderl.execution import ExecutionResult
from coderl.problem import Problem
from coderl.wire import SampledProgram
from critic.loss import pass_probabilities
from critic.model import Critic
from models.prompts import repair_problem
from models.sequences import TokenBatch, pad_left, pad_right

__all__ = [
    "Candidate",
    "CriticalSampler",
    "Origin",
    "best_prefix_length",
    "spread_budget",
    "stage_budgets",
]

log = logging.getLogger(__name__)

Origin = Literal["sampled", "refined", "repaired"]


class Generator(Protocol):
    """What generates programs: ``actors.policy.Policy``."""

    def sample(
        self,
        problems: Sequence[Problem],
        params: SamplingConfig,
        round_id: str = "",
        prefixes: Sequence[Sequence[int]] | None = None,
    ) -> list[SampledProgram]: ...

    def prompt_token_ids(self, problem: Problem) -> list[int]: ...


Execute = Callable[[Sequence[tuple[Problem, str]], str], list[ExecutionResult]]
"""runs (problem, program) pairs against ``"example"`` or ``"hidden"`` tests"""


@dataclass
class Candidate:
    """One generated program of a problem and what the tests said."""

    sample: SampledProgram
    origin: Origin
    round: int
    example: ExecutionResult | None = None
    """None: the problem has no example tests"""
    hidden: ExecutionResult | None = None

    @property
    def passed_examples(self) -> bool | None:
        return None if self.example is None else self.example.passed


def stage_budgets(n: int, rounds: int) -> list[int]:
    """How N programs split over stage 0 and ``rounds`` refine/repair rounds: N // (rounds + 1)
    each, the remainder to stage 0 (so it has at least as many as any later round)."""
    if n < 1 or rounds < 0:
        raise ValueError(f"a budget needs n >= 1 and rounds >= 0, got n={n} rounds={rounds}")
    share = n // (rounds + 1)
    return [n - share * rounds] + [share] * rounds


def spread_budget(budget: int, parts: int) -> list[int]:
    """``budget`` programs over ``parts`` seeds (best first): budget // parts each, one more for
    the first budget % parts (the paper upsamples each seed N/|P| times)."""
    if parts < 1:
        return []
    share, extra = divmod(budget, parts)
    return [share + (index < extra) for index in range(parts)]


def best_prefix_length(pass_probabilities: Sequence[float]) -> int:
    """Length of the seed: the prefix up to the token the critic scores highest, t_max = argmax_t
    q(w_t) (the first on ties), as a count of tokens; at least 1."""
    if not pass_probabilities:
        raise ValueError("a program with no tokens has no prefix to seed from")
    best = max(range(len(pass_probabilities)), key=lambda t: (pass_probabilities[t], -t))
    return best + 1


@dataclass
class CriticalSampler:
    """Critical sampling of one problem at a time; ``critic`` None: plain sampling throughout."""

    policy: Generator
    execute: Execute
    params: SamplingConfig
    critic: Critic | None = None
    repair_model: Generator | None = None
    """None: the policy repairs (a repair model trained with ``coderl sft`` on
    ``coderl evaluate --repair-data`` pairs does better)"""
    rounds: int = 1
    repair_top_m: int = 1
    stats: dict[str, int] = field(default_factory=dict)

    def run(self, problem: Problem, n: int, seed: int | None) -> list[Candidate]:
        """N programs for ``problem``, every one executed against the example (if any) and hidden
        tests, in generation order."""
        budgets = stage_budgets(n, self.rounds if self.critic is not None else 0)
        pool = self._judge(problem, self._sample(problem, budgets[0], seed, "/s0"), 0)
        for round_index, budget in enumerate(budgets[1:], 1):
            if budget == 0:
                continue
            round_seed = None if seed is None else seed + 7919 * round_index
            generated = self._next_round(problem, pool, budget, round_seed, round_index)
            pool += self._judge(problem, generated, round_index)
        return pool

    # -- one round ------------------------------------------------------------------------------

    def _next_round(
        self, problem: Problem, pool: list[Candidate], budget: int, seed: int | None, round_index: int
    ) -> list[tuple[SampledProgram, Origin]]:
        if not problem.example_tests:
            self._count("plain_rounds")
            return [(s, "sampled") for s, _ in self._sample(problem, budget, seed, f"/s{round_index}")]
        # A seed never ends with the program's EOS (regenerating from it would copy the program), so
        # a passing program needs a token before its EOS to give one.
        passing = [c for c in pool if c.passed_examples and len(c.sample.token_ids) > int(c.sample.finished)]
        if passing:
            self._count("refine_rounds")
            return self._refine(problem, passing, budget, seed, round_index)
        self._count("repair_rounds")
        return self._repair(problem, pool, budget, seed, round_index)

    def _refine(
        self, problem: Problem, passing: list[Candidate], budget: int, seed: int | None, round_index: int
    ) -> list[tuple[SampledProgram, Origin]]:
        token_scores, _ = self._critic_scores(problem, passing)
        seeds = sorted(
            (
                (max(usable), c.sample.token_ids[: best_prefix_length(usable)])
                for c, values in zip(passing, token_scores, strict=True)
                for usable in [values[: len(values) - int(c.sample.finished)]]
            ),
            key=lambda scored: -scored[0],
        )
        counts = spread_budget(budget, len(seeds))
        chosen = [(prefix, count) for (_, prefix), count in zip(seeds, counts, strict=True) if count]
        out: list[tuple[SampledProgram, Origin]] = []
        for index, (prefix, count) in enumerate(chosen):
            params = self.params.model_copy(
                update={"n": count, "seed": None if seed is None else seed + index}
            )
            samples = self.policy.sample([problem], params, f"/r{round_index}s{index}", prefixes=[prefix])
            out += [(sample, "refined") for sample in samples]
        return out

    def _repair(
        self, problem: Problem, pool: list[Candidate], budget: int, seed: int | None, round_index: int
    ) -> list[tuple[SampledProgram, Origin]]:
        failed = [c for c in pool if c.example is not None and c.sample.token_ids]
        _, program_scores = self._critic_scores(problem, failed)
        ranked = sorted(zip(program_scores, range(len(failed)), strict=True), key=lambda s: (-s[0], s[1]))
        top = [failed[index] for _, index in ranked[: self.repair_top_m]]
        repairer = self.repair_model or self.policy
        out: list[tuple[SampledProgram, Origin]] = []
        for index, (candidate, count) in enumerate(zip(top, spread_budget(budget, len(top)), strict=True)):
            if not count:
                continue
            error = candidate.example.error if candidate.example is not None else None
            asked = repair_problem(
                problem,
                candidate.sample.program,
                candidate.example.verdict.value if candidate.example is not None else "",
                error.type if error else "",
                error.message if error else "",
            )
            params = self.params.model_copy(
                update={"n": count, "seed": None if seed is None else seed + index}
            )
            out += [(s, "repaired") for s in repairer.sample([asked], params, f"/p{round_index}s{index}")]
        return out

    # -- helpers --------------------------------------------------------------------------------

    def _sample(
        self, problem: Problem, count: int, seed: int | None, round_id: str
    ) -> list[tuple[SampledProgram, Origin]]:
        params = self.params.model_copy(update={"n": count, "seed": seed})
        return [(sample, "sampled") for sample in self.policy.sample([problem], params, round_id)]

    def _judge(
        self, problem: Problem, generated: list[tuple[SampledProgram, Origin]], round_index: int
    ) -> list[Candidate]:
        programs = [(problem, sample.program) for sample, _ in generated]
        hidden = self.execute(programs, "hidden")
        examples: list[ExecutionResult | None] = [None] * len(programs)
        if problem.example_tests:
            examples = list(self.execute(programs, "example"))
        return [
            Candidate(sample, origin, round_index, example, result)
            for (sample, origin), example, result in zip(generated, examples, hidden, strict=True)
        ]

    @torch.no_grad()
    def _critic_scores(
        self, problem: Problem, candidates: Sequence[Candidate]
    ) -> tuple[list[list[float]], list[float]]:
        """p(pass | w_1..t, problem) for every token of every candidate, and p(pass | W, problem)
        of each whole program (the critic's pooled logits), under the problem's own prompt (a
        repaired program was generated from a repair prompt)."""
        if self.critic is None or not candidates:
            return [[0.0] * len(c.sample.token_ids) for c in candidates], [0.0] * len(candidates)
        pad = int(self.critic.tokenizer.pad_token_id)
        prompt = self.policy.prompt_token_ids(problem)
        prompt_ids, prompt_mask = pad_left([prompt] * len(candidates), pad)
        program_ids, program_mask = pad_right([c.sample.token_ids for c in candidates], pad)
        batch = TokenBatch(prompt_ids, prompt_mask, program_ids, program_mask).to(self.critic.device)
        was_training = self.critic.training
        self.critic.eval()
        try:
            output = self.critic(batch)
        finally:
            self.critic.train(was_training)
        tokens = pass_probabilities(output.token_logits, batch.response_mask).cpu()
        programs = output.program_logits.float().softmax(dim=-1)[:, -1].cpu()
        token_scores = [tokens[row, : len(c.sample.token_ids)].tolist() for row, c in enumerate(candidates)]
        return token_scores, programs.tolist()

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1
