"""Learning-rate schedules as pure functions of the step (multipliers of the configured lr)."""

from __future__ import annotations

import math

import torch

from learner.config import Schedule

__all__ = ["Schedule", "lr_factor", "make_scheduler"]


def lr_factor(step: int, total: int, warmup: int, schedule: Schedule) -> float:
    """The multiplier of the base lr for optimizer step ``step`` (0-based) of ``total``.

    Warm-up (step < warmup): (step + 1) / warmup. After it, with p = (step - warmup) / (total - warmup)
    the fraction of the decay done: constant 1; linear 1 - p; cosine (1 + cos(pi p)) / 2.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total: int, warmup: int, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """Step it after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, schedule))
