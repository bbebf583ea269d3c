"""What the learner answers the driver with (through Ray or in one process): typed, versioned."""

from __future__ import annotations

from coderl.wire import WireMessage

__all__ = ["LearnerStatus", "SFTReport", "StepReport"]


class LearnerStatus(WireMessage):
    """The learner's counters, asked for at any time (``Learner.status``)."""

    policy_version: int
    settled_samples: int
    """sampled programs (greedy decodes excluded) trained on or dropped since the learner started;
    the driver's admission control counts them"""
    executions: int
    """results read since the learner started, greedy decodes included"""
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
