"""Critic configuration (pydantic; defaults defined once here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CriticConfig(BaseModel):
    """The outcome predictor: a language-model backbone plus a per-token classification head."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    model: str = "tiny"
    """backbone: a preset, checkpoint directory or hub name (CodeRL: codet5-base), or a critic
    checkpoint written by Critic.save"""
    classes: Literal["outcome", "binary"] = "outcome"
    """outcome: CodeRL's four classes (compile error, runtime error, failed test, passed);
    binary: passed vs not passed (the critic that picks prefixes in critical sampling)"""
    head_hidden: int = Field(default=128, ge=1)
    """width of the head's hidden layer (CodeRL: Linear(d, 128) -> ReLU -> Linear(128, classes))"""
    device: str = "auto"
    """auto (cuda when present, else cpu); a training run puts the critic on the learner's device"""
    seed: int = 0
    """seeds the head (and a preset backbone's random initialisation)"""

    @property
    def num_classes(self) -> int:
        return 4 if self.classes == "outcome" else 2
