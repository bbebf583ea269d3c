"""Supervised warm start: cross-entropy on ground-truth programs (CodeRL's first stage)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from actors.policy import Policy
from coderl.problem import Problem
from models.sequences import response_logprobs

from .config import OptimizerConfig, SFTConfig
from .losses import cross_entropy_loss
from .schedules import make_scheduler

__all__ = ["SFTExample", "SFTReport", "ce_step", "make_optimizer", "sft_examples", "train_sft"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTExample:
    task_id: str
    prompt_ids: list[int]
    program_ids: list[int]


@dataclass
class SFTReport:
    losses: list[float] = field(default_factory=list)
    """the training loss of every step"""
    programs: int = 0
    """distinct ground-truth programs trained on"""
    examples: int = 0
    """programs seen, repeats included"""
    seconds: float = 0.0


def sft_examples(
    policy: Policy, problems: Sequence[Problem], max_per_problem: int | None = None
) -> list[SFTExample]:
    """One (prompt, program) pair per ground-truth program, tokenised by the policy."""
    examples = []
    for problem in problems:
        prompt = policy.prompt_token_ids(problem)
        for program in problem.solutions[:max_per_problem]:
            examples.append(SFTExample(problem.task_id, prompt, policy.program_token_ids(program)))
    return examples


def make_optimizer(
    parameters: Iterator[torch.nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas)


def ce_step(
    policy: Policy, optimizer: torch.optim.Optimizer, examples: Sequence[SFTExample], max_grad_norm: float
) -> float:
    """One optimizer step of cross-entropy on ``examples``; returns the loss before the step."""
    policy.model.train()
    batch = policy.batch([e.prompt_ids for e in examples], [e.program_ids for e in examples])
    loss = cross_entropy_loss(response_logprobs(policy.model, batch), batch.response_mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.model.parameters(), max_grad_norm)
    optimizer.step()
    policy.version += 1
    return float(loss.detach())


def _batches(examples: Sequence[SFTExample], batch_size: int, seed: int) -> Iterator[list[SFTExample]]:
    """Endless batches, reshuffled every epoch with a seeded RNG."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if len(chunk) < batch_size and len(order) >= batch_size:
                break  # drop the ragged tail, as CodeRL does (dataloader_drop_last)
            yield [examples[i] for i in chunk]


def train_sft(
    policy: Policy,
    problems: Sequence[Problem],
    config: SFTConfig,
    steps: int,
    on_step: Callable[[int, float], None] | None = None,
) -> SFTReport:
    """Train ``policy`` in place for ``steps`` steps on the problems' ground-truth programs."""
    examples = sft_examples(policy, problems, config.max_solutions_per_problem)
    if not examples:
        raise ValueError("no ground-truth programs to train on: the problems have no solutions")
    log.info("SFT on %d programs of %d problems for %d steps", len(examples), len(problems), steps)
    optimizer = make_optimizer(policy.model.parameters(), config.optimizer)
    scheduler = make_scheduler(optimizer, steps, config.optimizer.warmup_steps, config.optimizer.schedule)
    report = SFTReport(programs=len(examples))
    started = time.monotonic()
    batches = _batches(examples, config.batch_size, config.seed)
    for step in range(1, steps + 1):
        batch = next(batches)
        loss = ce_step(policy, optimizer, batch, config.optimizer.max_grad_norm)
        scheduler.step()
        report.losses.append(loss)
        report.examples += len(batch)
        if on_step is not None:
            on_step(step, loss)
        if step % config.log_every == 0 or step == steps:
            recent = report.losses[-config.log_every :]
            log.info("sft step %d/%d: loss %.4f", step, steps, sum(recent) / len(recent))
    report.seconds = time.monotonic() - started
    return report
