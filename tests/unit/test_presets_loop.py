"""Every shipped preset, at its own shapes, through the real update loop (driver/loop.py) with a
simulated learner that keeps the real learner's rules: whole groups, oldest first, a group more
than max_policy_lag versions old is dropped (stale='drop'), and an update that finds too few
trainable samples while no round is in flight would wait forever: a stall."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from fakes import FakeLearner, FakeRoles, round_report, status, step_report

from actors.sampler import RoundReport
from coderl.config import load_config
from driver.loop import Admission, run_updates
from driver.phases import rl_update
from driver.train_config import TrainConfig
from learner.reports import StepReport

PRESETS = sorted(Path(__file__).resolve().parents[2].glob("deploy/configs/*.toml"))


class Stalled(AssertionError):
    pass


class SimulatedRun(FakeRoles):
    """Rounds yield groups sampled at the learner's version when the round starts; updates train
    whole groups and drop stale ones, as learner/buffer.py does."""

    def __init__(self, admission: Admission, group: int, max_lag: int, samplers: int) -> None:
        self.admission, self.group, self.max_lag = admission, group, max_lag
        self.version = self.settled = self.trained = 0
        self.waiting: deque[int] = deque()  # the sampling version of each group, oldest first
        super().__init__(FakeLearner(status(), self._update), num_samplers=samplers)

    def make_round(self, sampler: int) -> RoundReport:
        self.waiting.extend([self.version] * (self.admission.per_round // self.group))
        return round_report(sampler, self.admission.per_round)

    def _update(self) -> StepReport:
        taken = 0
        while self.waiting and taken + self.group <= self.admission.batch:
            sampled_at = self.waiting.popleft()
            self.settled += self.group
            if self.version - sampled_at <= self.max_lag:
                taken += self.group
        if taken == 0:
            raise Stalled(f"no trainable group at version {self.version}: the learner would wait forever")
        self.version += 1
        self.trained += taken
        return step_report(status(self.settled, version=self.version), taken)


def _simulate(config: TrainConfig, admission: Admission, steps: int) -> SimulatedRun:
    run = SimulatedRun(
        admission, config.sampler.sampling.n, config.learner.max_policy_lag, config.sampler.num_samplers
    )
    run_updates(run, rl_update, steps, admission, lambda *_: None, broadcast=True)
    return run


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_makes_progress_in_the_update_loop(preset: Path) -> None:
    config = load_config(TrainConfig, preset)
    run = _simulate(config, Admission.of(config), steps=50)
    assert run.version == 50 and run.trained >= 50 * config.sampler.sampling.n


def test_the_simulation_finds_the_stall_the_old_apps_preset_had() -> None:
    """8 problems x 20 samples a round against 2 x 20 that may wait: groups 4-8 of a round go stale."""
    config = load_config(TrainConfig, PRESETS[0].parent / "codet5-large-ntp-py-apps.toml")
    stalling = Admission(per_round=8 * 20, batch=20, cap=2 * 20, decoupled=True)
    with pytest.raises(Stalled):
        _simulate(config, stalling, steps=50)
