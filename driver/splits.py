"""The run's problem splits: SFT (ground truth for the warm start and the CE term), RL (what the
samplers draw from) and held-out (pass@1 evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

from problems import Problem, load_problems
from problems.suite import load_suite

from .train_config import ProblemsConfig

__all__ = ["ProblemSplits", "load_splits"]


@dataclass(frozen=True)
class ProblemSplits:
    sft: list[Problem]
    rl: list[Problem]
    held_out: list[Problem]

    def all(self) -> list[Problem]:
        seen: dict[str, Problem] = {}
        for problem in [*self.sft, *self.rl, *self.held_out]:
            seen.setdefault(problem.task_id, problem)
        return list(seen.values())


def load_splits(config: ProblemsConfig) -> ProblemSplits:
    if config.source == "suite":
        suite = load_suite(config.suite)
        # The samplers draw from all of train: SFT problems too (their solutions are not used for RL).
        return ProblemSplits(sft=list(suite.sft), rl=list(suite.train), held_out=list(suite.held_out))

    def read(path: str | None) -> list[Problem]:
        return [] if path is None else load_problems(path)[: config.limit]

    sft = read(config.sft_path)
    rl = read(config.rl_path) if config.rl_path else sft
    return ProblemSplits(sft=sft, rl=rl, held_out=read(config.held_out_path))
