"""Where in the update the peak falls: the update split into phases at the models' forward calls.

``Learner.train_on`` runs the critic without gradients (its token values), then the actor's passes
and AdamW step, then (critic mode "online") the critic's passes and AdamW step. A forward pre-hook
on the policy and on the critic sees each phase begin: the first forward of another model, or of
the critic with gradients on, closes the phase before it, reading its peak and resetting it. Only
public module hooks are used; the learner is not touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel

__all__ = ["Phase", "PhaseTracker"]


class Phase(BaseModel):
    name: str
    start_bytes: int
    """in use when it began"""
    peak_bytes: int
    seconds: float


class PhaseTracker:
    """Records ``Phase``s from the first forward pass after it is made until ``stop``, named after
    the model that runs; the first phase's peak includes what ran before its first pass."""

    def __init__(
        self,
        policy: torch.nn.Module,
        critic: torch.nn.Module | None,
        in_use: Callable[[], int],
        take_peak: Callable[[], int],
    ) -> None:
        """``in_use``: bytes in use now; ``take_peak``: the peak since the last call, then reset."""
        self.in_use, self.take_peak = in_use, take_peak
        self.phases: list[Phase] = []
        self._current: tuple[str, int, float] | None = None
        self._handles = [policy.register_forward_pre_hook(self._hook("actor passes and AdamW step"))]
        if critic is not None:
            self._handles.append(critic.register_forward_pre_hook(self._critic_hook))

    def _hook(self, name: str) -> Callable[..., None]:
        def enter(*_: Any) -> None:
            self._enter(name)

        return enter

    def _critic_hook(self, *_: Any) -> None:
        training = torch.is_grad_enabled()
        self._enter("critic step and AdamW step" if training else "critic token values (no grad)")

    def _enter(self, name: str) -> None:
        if self._current is not None and self._current[0] == name:
            return
        self._close()
        self._current = (name, self.in_use(), time.perf_counter())

    def _close(self) -> None:
        if self._current is None:
            return
        name, start, began = self._current
        seconds = time.perf_counter() - began
        self.phases.append(Phase(name=name, start_bytes=start, peak_bytes=self.take_peak(), seconds=seconds))
        self._current = None

    def stop(self) -> list[Phase]:
        """Close the last phase and remove the hooks; the phases in order."""
        self._close()
        for handle in self._handles:
            handle.remove()
        return self.phases
