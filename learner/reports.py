"""What the learner answers the driver with (through Ray or in one process): typed, versioned."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from coderl.wire import WireMessage

__all__ = ["LearnerStatus", "LearnerTotals", "SFTReport", "StepReport"]


class LearnerStatus(WireMessage):
    """The learner's counters, asked for at any time (``Learner.status``)."""

    policy_version: int
    settled_samples: int
    """sampled programs (greedy decodes excluded) trained on or dropped over the run (a resumed
    learner goes on from its checkpoint's count); the driver's admission control counts them"""
    executions: int
    """results read over the run, greedy decodes included"""
    exec_busy_s: float
    """sandbox seconds of those results (the executors' busy time)"""
    counters: dict[str, float]
    """the sample buffer's counts (``buffer/...``: verdicts, drops, settled)"""


class StepReport(WireMessage):
    """One critic or RL update."""

    samples: int
    stats: dict[str, float]
    """losses, rewards, the verdict mix and lags of this update, and the buffer's counts"""
    wait_s: float
    """time spent waiting for executed samples"""
    train_s: float
    status: LearnerStatus
    """the learner after the update"""


class SFTReport(WireMessage):
    """A stretch of the supervised warm start."""

    steps: int
    losses: list[tuple[int, float]]
    """(step within this stretch, mean loss since the previous logged step) every sft.log_every
    steps and at the last"""
    seconds: float
    status: LearnerStatus


class LearnerTotals(BaseModel):
    """The learner's run-wide counts, kept in checkpoints so a resumed run's counters go on from
    them rather than from zero."""

    model_config = ConfigDict(extra="forbid")

    counters: dict[str, int] = Field(default_factory=dict)
    """the sample buffer's counters (settled, dropped, verdicts)"""
    executions: int = 0
    exec_busy_s: float = 0.0
