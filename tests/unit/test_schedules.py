"""Learning-rate schedules: hand-computed multipliers, and where they may be used."""

from __future__ import annotations

import math

import pytest
import torch

from learner.config import CriticTrainingConfig, LearnerConfig, OptimizerConfig
from learner.schedules import lr_factor, make_scheduler


def test_constant_is_one_after_warmup() -> None:
    assert [lr_factor(s, 10, 4, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0, 10, 0, "constant") == 1.0


def test_linear_decays_to_zero_over_the_steps_after_warmup() -> None:
    # total 10, warm-up 2: decay over 8 steps, p = (s - 2) / 8
    got = [lr_factor(s, 10, 2, "linear") for s in range(11)]
    assert got == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])


def test_cosine_halves_at_the_midpoint() -> None:
    assert lr_factor(0, 8, 0, "cosine") == 1.0
    assert lr_factor(4, 8, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(2, 8, 0, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor(20, 8, 0, "cosine") == pytest.approx(0.0)  # past the end: stays at 0


def test_scheduler_drives_the_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    scheduler = make_scheduler(optimizer, total=4, warmup=0, schedule="linear")
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1, 0.075, 0.05, 0.025])


def test_rl_optimizers_refuse_a_schedule_they_would_ignore() -> None:
    with pytest.raises(ValueError, match="SFT optimizer only"):
        LearnerConfig(optimizer=OptimizerConfig(schedule="linear"))
    with pytest.raises(ValueError, match="SFT optimizer only"):
        CriticTrainingConfig(optimizer=OptimizerConfig(warmup_steps=5))
