"""The phases of a run, in order: SFT warm start -> critic pre-training -> CodeRL RL.

A phase knows its length (from ``phases.*_steps``) and how to run the steps still owed; the run
(driver/run.py) counts the steps each phase has finished, so a resumed run continues inside a phase,
and a finished run given more steps trains them.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass

from coderl.rollouts import unsettled_rollouts
from learner.reports import StepReport

from .loop import Admission, PhaseClock, Update, run_updates
from .roles import LearnerProxy, Pending
from .run import Run
from .train_config import TrainConfig

__all__ = ["Phase", "SFTPhase", "UpdatePhase", "critic_update", "phases_of", "rl_update"]

log = logging.getLogger(__name__)


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
    """Cross-entropy on the SFT problems' ground truth, inside the learner, in stretches of
    ``checkpoint_every`` (``sft_checkpoint_every``) steps with a checkpoint after each (a killed
    warm start resumes inside)."""

    checkpoint_every: int

    def run(self, run: Run, remaining: int) -> None:
        if not run.splits.sft:
            return
        while remaining > 0:
            done = run.state.phase_steps.get(self.name, 0)
            steps = min(remaining, self.checkpoint_every - done % self.checkpoint_every)
            first = run.global_step
            report = run.roles.learner.sft(steps, self.steps).result()
            for step, loss in report.losses:
                run.metrics.write(first + step, {"loss/sft": loss})
            run.metrics.write(first + report.steps, {"sft/seconds": report.seconds})
            run.finish_steps(self.name, report.steps, report.status.policy_version)
            remaining -= report.steps
            if remaining > 0:  # the last stretch's checkpoint follows the phase
                run.checkpoint()


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

        already_out = self.admission.programs_in(unsettled_rollouts(run.client, run.channel))
        if already_out:
            log.info(
                "%s phase: %d sampled programs already out count against admission", self.name, already_out
            )
        run_updates(run.roles, self.update, remaining, self.admission, on_update, self.broadcast, already_out)


def critic_update(learner: LearnerProxy) -> Pending[StepReport]:
    return learner.critic_update()


def rl_update(learner: LearnerProxy) -> Pending[StepReport]:
    return learner.rl_update()


def phases_of(config: TrainConfig) -> list[Phase]:
    """The run's phases in order; a phase of 0 steps is skipped."""
    admission = Admission.of(config)
    return [
        SFTPhase(
            "sft",
            config.phases.sft_steps,
            evaluate_after=True,
            checkpoint_every=config.sft_checkpoint_every,
        ),
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
