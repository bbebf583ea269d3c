"""Shared fakes of the run's roles, typed like the real ones (driver/roles.py): a learner whose calls
run when their result is read, and roles whose samplers answer at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from actors.sampler import RoundReport, SamplerState
from coderl.problem import Problem
from coderl.wire import SampledProgram
from driver.roles import LearnerProxy, Pending, Roles
from learner.reports import LearnerStatus, SFTReport, StepReport

T = TypeVar("T")


class Deferred(Pending[T]):
    """A call that runs when its result is first read (as a remote call finishes later)."""

    def __init__(self, fn: Callable[[], T], sampler: int | None = None) -> None:
        self.fn, self.sampler = fn, sampler
        self._done = False
        self._value: T | None = None

    def result(self) -> T:
        if not self._done:
            self._value, self._done = self.fn(), True
        return self._value  # type: ignore[return-value]


def status(settled: int = 0, executions: int = 0, version: int = 0) -> LearnerStatus:
    return LearnerStatus(
        policy_version=version, settled_samples=settled, executions=executions, exec_busy_s=0.0, counters={}
    )


def step_report(status: LearnerStatus, samples: int) -> StepReport:
    return StepReport(samples=samples, stats={}, wait_s=0.0, train_s=0.0, status=status)


def round_report(sampler: int, samples: int) -> RoundReport:
    return RoundReport(
        sampler_id=sampler,
        round_index=0,
        policy_version=0,
        problems=1,
        samples=samples,
        tokens=0,
        generate_s=0.0,
        publish_s=0.0,
        weights_s=0.0,
        state=SamplerState(),
    )


class FakeLearner(LearnerProxy):
    """Updates run ``on_update`` when read; everything else answers from ``current``."""

    def __init__(self, current: LearnerStatus, on_update: Callable[[], StepReport]) -> None:
        self.current = current
        self.on_update = on_update

    def rl_update(self) -> Pending[StepReport]:
        return Deferred(self.on_update)

    def critic_update(self) -> Pending[StepReport]:
        return Deferred(self.on_update)

    def sft(self, steps: int, total_steps: int | None = None) -> Pending[SFTReport]:
        return Deferred(lambda: SFTReport(steps=steps, losses=[], seconds=0.0, status=self.current))

    def status(self) -> LearnerStatus:
        return self.current

    def greedy_programs(self, problems: Sequence[Problem], max_new_tokens: int) -> list[SampledProgram]:
        return []

    def save(self, directory: Path) -> None:
        pass

    def acknowledge_settled(self) -> int:
        return 0


class FakeRoles(Roles):
    """Samplers whose rounds are done when submitted; ``wait`` hands back rounds before updates."""

    def __init__(self, learner: LearnerProxy, num_samplers: int = 1) -> None:
        self.learner = learner
        self.num_samplers = num_samplers

    def make_round(self, sampler: int) -> RoundReport:
        return round_report(sampler, 0)

    def submit_round(self, sampler: int) -> Pending[RoundReport]:
        report = self.make_round(sampler)
        return Deferred(lambda: report, sampler=sampler)

    def wait(self, pending: Sequence[Pending[Any]], timeout_s: float | None) -> list[Pending[Any]]:
        rounds = [p for p in pending if p.sampler is not None]
        return rounds[:1] or [p for p in pending if p.sampler is None][:1]

    def broadcast(self) -> tuple[int, float]:
        return 0, 0.0

    def sampler_states(self) -> list[SamplerState]:
        return [SamplerState() for _ in range(self.num_samplers)]

    def restore_samplers(self, states: Sequence[SamplerState]) -> None:
        pass

    def recover_sampler(self, sampler: int, state: SamplerState) -> None:
        pass

    def shutdown(self) -> None:
        pass
