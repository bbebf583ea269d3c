"""One learner rank's share of an update at a configuration's longest shapes, as synthetic data.

Memory depends on how many rows a pass holds and how long they are, not on what the tokens say, so
every row is as long as the configuration allows: prompts of ``policy.max_prompt_tokens``, sampled
programs and greedy decodes of ``sampler.sampling.max_new_tokens`` (the sampler's hard cap), and
ground-truth programs of ``policy.max_program_tokens`` (the learner's cut). The ground truth goes
in the way the learner takes it, as SFT problems the learner tokenises itself; their texts are long
enough for any tokenizer to reach the caps (``check_ground_truth`` verifies that it did).

With ``learner.world_size`` ranks, rank 0 takes the largest share of every row set, ceil(rows /
world_size) (learner ranks split each batch into contiguous shares differing by at most one row).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from coderl.outcomes import RewardConfig, Verdict
from coderl.problem import Problem, TestCase, TestKind
from coderl.wire import SampledProgram
from driver.train_config import TrainConfig
from learner.batch import ScoredSample, TrainBatch, score

__all__ = ["RankShape", "check_ground_truth", "ground_truth_problems", "rank_shape", "train_batch"]

_VERDICTS = (Verdict.PASSED, Verdict.FAILED_TEST, Verdict.RUNTIME_ERROR, Verdict.COMPILE_ERROR)
_WORDS = ("alpha", "beta", "gamma", "delta", "value", "index", "count", "total", "print", "range")
FIRST_ID = 3
"""synthetic token ids start above T5's pad, EOS and unk"""


class TokenisedExample(Protocol):
    """A ground-truth row as the learner holds it (``Learner.ground_truth``)."""

    prompt_ids: list[int]
    program_ids: list[int]


@dataclass(frozen=True)
class RankShape:
    """What one rank trains on in one update."""

    world_size: int
    sampled: int
    """sampled programs: the actor's RL rows, also critic rows"""
    greedy: int
    """greedy decodes (the greedy baseline): critic rows only"""
    ground_truth: int
    """rows of the cross-entropy term"""
    group_size: int
    prompt_tokens: int
    sampled_tokens: int
    program_tokens: int


def _share(total: int, world_size: int) -> int:
    return math.ceil(total / world_size)


def rank_shape(config: TrainConfig) -> RankShape:
    """Rank 0's share (the largest) of an update of ``config`` at its longest shapes."""
    # world_size is new in LearnerConfig; older configurations have one rank.
    world_size = int(getattr(config.learner, "world_size", 1))
    learner, n = config.learner, config.sampler.sampling.n
    greedy_total = math.ceil(learner.batch_size / n) if config.greedy_baseline else 0
    sampled = _share(learner.batch_size, world_size)
    # The critic step splits sampled + greedy rows together; this rank's extra rows beyond its
    # sampled share stand for the greedy decodes it gets.
    greedy = _share(learner.batch_size + greedy_total, world_size) - sampled
    ground_truth = 0 if learner.loss.ce_weight == 0 else _share(learner.ground_truth_batch_size, world_size)
    return RankShape(
        world_size=world_size,
        sampled=sampled,
        greedy=greedy,
        ground_truth=ground_truth,
        group_size=n,
        prompt_tokens=config.policy.max_prompt_tokens,
        sampled_tokens=config.sampler.sampling.max_new_tokens,
        program_tokens=config.policy.max_program_tokens,
    )


def _text(rng: random.Random, words: int, separator: str) -> str:
    return separator.join(f"{rng.choice(_WORDS)}{rng.randrange(100)}" for _ in range(words))


def ground_truth_problems(shape: RankShape, seed: int = 0) -> list[Problem]:
    """``shape.ground_truth`` problems with one solution each, whose prompt and program tokenise to
    at least the caps: every word is at least one token for a byte or a word-split BPE tokenizer."""
    rng = random.Random(seed)
    test = TestCase(kind=TestKind.STDIO, stdin="", stdout="")
    return [
        Problem(
            task_id=f"bench-memory-{i}",
            statement=_text(rng, 2 * shape.prompt_tokens, " "),
            hidden_tests=[test],
            solutions=[_text(rng, 2 * shape.program_tokens, "\n")],
        )
        for i in range(shape.ground_truth)
    ]


def check_ground_truth(examples: Sequence[TokenisedExample], shape: RankShape) -> None:
    """Raise unless the learner's tokenised ground truth hits the caps (the measurement's premise)."""
    short = [
        (len(e.prompt_ids), len(e.program_ids))
        for e in examples
        if (len(e.prompt_ids), len(e.program_ids)) != (shape.prompt_tokens, shape.program_tokens)
    ]
    if len(examples) != shape.ground_truth or short:
        raise RuntimeError(
            f"ground truth: {len(examples)} rows, expected {shape.ground_truth} of "
            f"{shape.prompt_tokens} + {shape.program_tokens} tokens; off-size rows: {short[:3]}"
        )


def _program(
    rng: random.Random, shape: RankShape, vocab: int, eos_id: int, group: int, member: str, greedy: bool
) -> SampledProgram:
    tokens = [rng.randrange(FIRST_ID, vocab) for _ in range(shape.sampled_tokens - 1)] + [eos_id]
    group_id = f"bench-memory-{group}/v0"
    return SampledProgram(
        sample_id=f"{group_id}/{member}",
        task_id=f"bench-memory-{group}",
        group_id=group_id,
        policy_version=0,
        program="pass\n",
        prompt_token_ids=[rng.randrange(FIRST_ID, vocab) for _ in range(shape.prompt_tokens)],
        token_ids=tokens,
        logprobs=[-1.0] * len(tokens),
        sampling_logprobs=[-1.0] * len(tokens),
        finished=True,
        is_greedy=greedy,
    )


def train_batch(
    shape: RankShape, vocab: int, eos_id: int, rewards: RewardConfig, greedy_baseline: bool, seed: int = 0
) -> TrainBatch:
    """The rank's sampled programs (groups of ``group_size``, verdicts cycling through CodeRL's
    classes) and greedy decodes, every row at full length; token ids below ``vocab``."""
    rng = random.Random(seed)
    greedy = [
        score(_program(rng, shape, vocab, eos_id, g, "greedy0", True), Verdict.FAILED_TEST, rewards)
        for g in range(shape.greedy)
    ]
    sampled: list[ScoredSample] = []
    for i in range(shape.sampled):
        group = i // shape.group_size
        program = _program(rng, shape, vocab, eos_id, group, f"sample{i % shape.group_size}", False)
        scored = score(program, _VERDICTS[i % len(_VERDICTS)], rewards)
        if greedy_baseline:
            # the group's greedy decode, or any one when this rank holds fewer (the value is moot)
            baseline = greedy[group % len(greedy)].reward if greedy else 0.0
            scored = dataclasses.replace(scored, baseline_reward=baseline)
        sampled.append(scored)
    return TrainBatch(sampled=sampled, greedy=greedy)
