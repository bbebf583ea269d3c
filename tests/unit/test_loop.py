"""Admission control of the update loop, against fake roles: samplers faster than the learner."""

from __future__ import annotations

import time

import pytest
from fakes import FakeLearner, FakeRoles, round_report, status, step_report

from driver.health import RoleDied
from driver.loop import Admission, PhaseClock, _learner_result, run_updates
from driver.phases import rl_update
from driver.roles import Pending
from driver.train_config import TrainConfig
from learner.config import LearnerConfig, PhasesConfig
from learner.reports import StepReport

BATCH = 32
EXECUTIONS_BEFORE = 1000
"""results the learner read before the phase (earlier phases)"""


class FastSamplerRoles(FakeRoles):
    """One sampler whose rounds finish at once; the learner settles a batch per update, and only
    runs when no round is in flight (the worst case for over-admission)."""

    def __init__(self, config: TrainConfig, settled_before: int) -> None:
        self.per_round = config.sampler.problems_per_round * config.sampler.sampling.n
        self.produced = 0
        self.settled = settled_before
        self.consumed = 0
        self.max_outstanding = 0
        learner = FakeLearner(status(settled_before, EXECUTIONS_BEFORE), self._update)
        super().__init__(learner)

    def make_round(self, sampler: int):  # type: ignore[no-untyped-def]
        self.produced += self.per_round
        self.max_outstanding = max(self.max_outstanding, self.produced - self.consumed)
        return round_report(sampler, self.per_round)

    def _update(self) -> StepReport:
        assert self.produced - self.consumed >= BATCH, "the learner ran without a full batch"
        self.consumed += BATCH
        self.settled += BATCH
        return step_report(status(self.settled, EXECUTIONS_BEFORE + self.consumed), BATCH)


@pytest.mark.parametrize("settled_before", [0, 5000], ids=["first phase", "later phase"])
@pytest.mark.parametrize("mode", ["decoupled", "sync"])
def test_samples_ahead_of_the_learner_stay_under_the_cap(settled_before: int, mode: str) -> None:
    """A later phase starts with the learner's settled count far above this phase's production: the
    loop must count from it, or it admits rounds without bound (they are then dropped as stale)."""
    config = TrainConfig(
        mode=mode,  # type: ignore[arg-type]
        learner=LearnerConfig(batch_size=BATCH, max_policy_lag=2),
        phases=PhasesConfig(rl_steps=20),
    )
    roles = FastSamplerRoles(config, settled_before)
    updates: list[float] = []
    executions: list[int] = []

    def on_update(report: StepReport, broadcast_s: float, clock: PhaseClock) -> None:
        updates.append(report.status.settled_samples)
        executions.append(clock.executions)

    run_updates(roles, rl_update, 20, Admission.of(config), on_update, True)
    assert len(updates) == 20
    # The phase counts its own executions, not the learner's total since it started.
    assert executions == [BATCH * (i + 1) for i in range(20)]
    cap = 2 * BATCH if mode == "decoupled" else BATCH
    assert roles.max_outstanding <= cap + roles.per_round
    assert roles.produced <= 20 * BATCH + cap + roles.per_round


def test_idle_fractions_include_the_executors_when_their_slots_are_known() -> None:
    clock = PhaseClock(started=time.monotonic() - 10.0)
    clock.sampler_busy_s, clock.learner_busy_s, clock.exec_busy_s = 5.0, 2.5, 10.0
    clock.executions = 250
    rates = clock.rates(num_samplers=1, sandboxes=4)
    assert rates["throughput/executions_per_s"] == pytest.approx(25.0, rel=0.01)
    assert rates["idle/sampler"] == pytest.approx(0.5, abs=0.01)
    assert rates["idle/learner"] == pytest.approx(0.75, abs=0.01)
    assert rates["idle/executor"] == pytest.approx(0.75, abs=0.01)  # 10 busy of 40 slot-seconds
    assert "idle/executor" not in clock.rates(num_samplers=1)


def test_work_already_out_at_a_phase_start_counts_against_admission() -> None:
    """A resumed run finds the killed run's rounds still in Redis: admitting a full cap on top of
    them is what dropped hundreds of samples as stale on every resume."""
    config = TrainConfig(
        learner=LearnerConfig(batch_size=BATCH, max_policy_lag=2), phases=PhasesConfig(rl_steps=20)
    )
    admission = Admission.of(config)
    assert admission.greedy and admission.samples_per_group == 4
    assert admission.programs_in(50) == 40  # 10 groups of 4 sampled programs and a greedy decode
    assert Admission.of(TrainConfig(learner=LearnerConfig(loss={"baseline": "none"}))).programs_in(50) == 50

    roles = FastSamplerRoles(config, settled_before=0)
    out = 2 * BATCH  # a full cap of work already out: no round may start before an update
    roles.produced = out  # the fake learner consumes it like any other round's
    run_updates(roles, rl_update, 20, admission, lambda *_: None, True, already_out=out)
    cap = 2 * BATCH
    assert roles.max_outstanding <= cap + roles.per_round  # ignoring it: cap + out + a round


class ActorDiedError(RuntimeError):
    """Stands in for ray.exceptions.ActorDiedError: the loop matches Ray's errors by class name."""


class _Failing(Pending[StepReport]):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def result(self) -> StepReport:
        raise self.error


def test_a_learner_dead_for_good_is_one_line_naming_it() -> None:
    error = ActorDiedError(
        "The actor died unexpectedly before finishing this task.\n\tclass_name: Learner\n..."
    )
    with pytest.raises(
        RoleDied, match=r"^the learner died beyond Ray's restarts: ActorDiedError: The actor died"
    ) as caught:
        _learner_result(_Failing(error))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="a bug"):  # any other error is the learner's own: raised as is
        _learner_result(_Failing(ValueError("a bug")))
