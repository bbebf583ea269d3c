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

from .actor_update import ce_backward
from .config import OptimizerConfig, SFTConfig
from .distributed import DataParallel
from .ntp import CodeSample, code_samples, draw_pivot, ground_truth_texts, ntp_split, python_files
from .schedules import make_scheduler

__all__ = [
    "DataOrder",
    "SFTExample",
    "SFTReport",
    "SFTTrainer",
    "at_most_per_problem",
    "make_optimizer",
    "sft_examples",
    "train_sft",
    "warm_start_examples",
]


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
    logged: list[tuple[int, float]] = field(default_factory=list)
    """(step of the phase, mean loss since the previous entry) every ``log_every`` steps and at the
    last step of the call"""
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


def at_most_per_problem(examples: Sequence[SFTExample], limit: int | None) -> list[SFTExample]:
    """The first ``limit`` examples of each problem (``sft_examples``'s order), all for None: the
    same list ``sft_examples(..., limit)`` gives, without tokenising again."""
    if limit is None:
        return list(examples)
    seen: dict[str, int] = {}
    kept = []
    for example in examples:
        seen[example.task_id] = seen.get(example.task_id, 0) + 1
        if seen[example.task_id] <= limit:
            kept.append(example)
    return kept


def warm_start_examples(
    policy: Policy, problems: Sequence[Problem], ground_truth: Sequence[SFTExample], config: SFTConfig
) -> list[SFTExample | CodeSample]:
    """The warm start's examples for ``config.objective``: problem -> program pairs (at most
    ``max_solutions_per_problem`` each), NTP code samples, or both."""
    examples: list[SFTExample | CodeSample] = []
    if config.objective in ("program", "program+ntp"):
        examples += at_most_per_problem(ground_truth, config.max_solutions_per_problem)
    if config.objective in ("ntp", "program+ntp"):
        if not policy.is_encoder_decoder:
            raise ValueError(
                "sft.objective ntp splits code between an encoder and a decoder: it needs an "
                f"encoder-decoder policy, and {policy.config.model} is a causal LM (use objective program)"
            )
        texts = (
            python_files(config.ntp_paths)
            if config.ntp_paths
            else ground_truth_texts(problems, config.max_solutions_per_problem)
        )
        window = policy.config.max_prompt_tokens + policy.config.max_program_tokens - 2
        ntp = code_samples(
            texts, lambda text: policy.tokenizer(text, add_special_tokens=False)["input_ids"], window
        )
        log.info("NTP objective: %d code samples from %d texts", len(ntp), len(texts))
        examples += ntp
    return examples


def make_optimizer(
    parameters: Iterator[torch.nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas)


class DataOrder:
    """The examples' order: reshuffled every epoch by one seeded RNG, the ragged tail of an epoch
    dropped as CodeRL does (dataloader_drop_last). ``batch(step)`` is a pure function of the step,
    so a resumed warm start continues the same order."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.per_epoch = size // batch_size if size >= batch_size else 1
        self._epoch, self._order, self._rng = -1, list(range(size)), random.Random(seed)

    def batch(self, step: int) -> list[int]:
        """The example indices of optimizer step ``step`` (0-based)."""
        epoch, index = divmod(step, self.per_epoch)
        if epoch < self._epoch:  # replay the shuffles from the seed
            self._epoch, self._order, self._rng = -1, list(range(self.size)), random.Random(self.seed)
        while self._epoch < epoch:
            self._rng.shuffle(self._order)
            self._epoch += 1
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]


class SFTTrainer:
    """The warm start's optimizer, learning-rate schedule and data order, kept across calls so
    that a run can checkpoint inside the phase and resume it (``state_dict``).

    Micro-batches, precision and data parallelism as the RL update's (learner/actor_update.py):
    each step's loss is the token-mean cross-entropy of the whole batch.
    """

    def __init__(
        self,
        policy: Policy,
        examples: Sequence[SFTExample | CodeSample],
        config: SFTConfig,
        total_steps: int,
        micro_batch_tokens: int = 0,
        precision: str = "fp32",
        dp: DataParallel | None = None,
    ) -> None:
        if not examples:
            raise ValueError("no ground-truth programs to train on: the problems have no solutions")
        self.policy, self.examples, self.config = policy, list(examples), config
        self.micro_batch_tokens, self.precision = micro_batch_tokens, precision
        self.dp = dp or DataParallel.single()
        self.total_steps = total_steps
        self.optimizer = make_optimizer(policy.model.parameters(), config.optimizer)
        opt = config.optimizer
        self.scheduler = make_scheduler(self.optimizer, total_steps, opt.warmup_steps, opt.schedule)
        self.order = DataOrder(len(self.examples), config.batch_size, config.seed)
        self.steps_done = 0

    def step(self) -> tuple[float, int]:
        """One optimizer step on the next batch; (its loss, its examples)."""
        indices = self.order.batch(self.steps_done)
        chosen = [self._pair(self.examples[i], i) for i in indices]
        batch = self.policy.batch([prompt for prompt, _ in chosen], [target for _, target in chosen])
        self.policy.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = ce_backward(self.policy, batch, 1.0, self.micro_batch_tokens, self.precision, self.dp)
        self.dp.sum_gradients(self.policy.model.parameters())
        (loss,) = self.dp.sum_floats([loss])
        torch.nn.utils.clip_grad_norm_(self.policy.model.parameters(), self.config.optimizer.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.policy.version += 1
        self.steps_done += 1
        return loss, len(chosen)

    def _pair(self, example: SFTExample | CodeSample, index: int) -> tuple[list[int], list[int]]:
        """(encoder or prompt ids, target ids) of an example at this step: an NTP sample is split
        at a pivot drawn from (seed, step, index), the same after a resume."""
        if isinstance(example, SFTExample):
            return example.prompt_ids, example.program_ids
        rng = random.Random(f"{self.config.seed}/{self.steps_done}/{index}")
        low, high = self.config.ntp_pivot_range
        pivot = draw_pivot(len(example.code_ids), rng, low, high)
        return ntp_split(example.code_ids, pivot, self.policy.eos_id)

    def train(self, steps: int, on_step: Callable[[int, float], None] | None = None) -> SFTReport:
        """``steps`` more steps; ``on_step(step, loss)`` after each (``step`` counts from 1 over
        the whole phase)."""
        report = SFTReport(programs=len(self.examples))
        started = time.monotonic()
        every, last = self.config.log_every, self.steps_done + steps
        for _ in range(steps):
            loss, count = self.step()
            report.losses.append(loss)
            report.examples += count
            if on_step is not None:
                on_step(self.steps_done, loss)
            if self.steps_done % every == 0 or self.steps_done == last:
                window = report.losses[-every:]
                report.logged.append((self.steps_done, sum(window) / len(window)))
                log.info("sft step %d/%d: loss %.4f", self.steps_done, self.total_steps, report.logged[-1][1])
        report.seconds = time.monotonic() - started
        return report

    def state_dict(self) -> dict[str, object]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "steps_done": self.steps_done,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state["total_steps"] != self.total_steps:
            log.warning(
                "the warm start was checkpointed for %s steps and resumes for %d: the learning-rate "
                "schedule follows the new length",
                state["total_steps"],
                self.total_steps,
            )
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.scheduler.load_state_dict(state["scheduler"])  # type: ignore[arg-type]
        self.steps_done = int(state["steps_done"])  # type: ignore[call-overload]


def train_sft(
    policy: Policy,
    problems: Sequence[Problem],
    config: SFTConfig,
    steps: int,
    on_step: Callable[[int, float], None] | None = None,
) -> SFTReport:
    """Train ``policy`` in place for ``steps`` steps on the problems' ground-truth programs."""
    examples = warm_start_examples(policy, problems, sft_examples(policy, problems), config)
    if not examples:
        raise ValueError("no ground-truth programs to train on: the problems have no solutions")
    log.info("SFT on %d programs of %d problems for %d steps", len(examples), len(problems), steps)
    return SFTTrainer(policy, examples, config, steps).train(steps, on_step)
