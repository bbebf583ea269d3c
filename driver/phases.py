"""The phases of a run, in order: SFT warm start -> critic pre-training -> CodeRL RL.

A phase knows its length (from ``phases.*_steps``) and how to run the steps still owed; the run
(driver/run.py) counts the steps each phase has finished, so a resumed run continues inside a phase,
and a finished run given more steps trains them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from learner.reports import StepReport

from .loop import Admission, PhaseClock, Update, run_updates
from .roles import LearnerProxy, Pending
from .run import Run
from .train_config import TrainConfig

__all__ = ["Phase", "SFTPhase", "UpdatePhase", "critic_update", "phases_of", "rl_update"]


@dataclass(frozen=True)
class Phase(abc.ABC):
    name: str
    steps: int
    """how many steps the run's configuration asks of this phase"""
    evaluate_after: bool
    """measure held-out pass@1 once the phase's steps are done"""

    @abc.abstractmethod
    def run(self, run: Run, remaining: int) -> None:
        """Run ``remaining`` more steps (at least 1)."""


@dataclass(frozen=True)
class SFTPhase(Phase):
    """Cross-entropy on the SFT problems' ground truth, inside the learner."""

    def run(self, run: Run, remaining: int) -> None:
        if not run.splits.sft:
            return
        first = run.global_step
        report = run.roles.learner.sft(remaining).result()
        for step, loss in report.losses:
            run.metrics.write(first + step, {"loss/sft": loss})
        run.metrics.write(first + report.steps, {"sft/seconds": report.seconds})
        run.finish_steps(self.name, report.steps, report.status.policy_version)


@dataclass(frozen=True)
class UpdatePhase(Phase):
    """Updates fed by the samplers: critic pre-training or RL."""

    update: Update
    broadcast: bool
    """send the new weights to the samplers after every update"""
    admission: Admission
    evaluate_every: int = 0
    """also measure held-out pass@1 every this many steps of the phase (0: never)"""

    def run(self, run: Run, remaining: int) -> None:
        run.roles.broadcast()  # samplers start from the learner's weights

        def on_update(report: StepReport, broadcast_s: float, clock: PhaseClock) -> None:
            run.record_update(self.name, report, broadcast_s, clock)
            done = run.state.phase_steps[self.name]
            if self.evaluate_every and done % self.evaluate_every == 0:
                run.evaluate(f"{self.name} step {done}")
            if done < self.steps:  # the last step's checkpoint follows the phase
                run.maybe_checkpoint(done)

        run_updates(run.roles, self.update, remaining, self.admission, on_update, self.broadcast)


def critic_update(learner: LearnerProxy) -> Pending[StepReport]:
    return learner.critic_update()


def rl_update(learner: LearnerProxy) -> Pending[StepReport]:
    return learner.rl_update()


def phases_of(config: TrainConfig) -> list[Phase]:
    """The run's phases in order; a phase of 0 steps is skipped."""
    admission = Admission.of(config)
    return [
        SFTPhase("sft", config.phases.sft_steps, evaluate_after=True),
        UpdatePhase(
            "critic",
            config.phases.critic_steps,
            evaluate_after=False,
            update=critic_update,
            broadcast=False,
            admission=admission,
        ),
        UpdatePhase(
            "rl",
            config.phases.rl_steps,
            evaluate_after=True,
            update=rl_update,
            broadcast=True,
            admission=admission,
            evaluate_every=config.eval.every,
        ),
    ]
