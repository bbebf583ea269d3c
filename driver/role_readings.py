"""The values each role's Ray metrics take, without Ray: the metric table (``METRICS``), and the
pure pieces that turn a role's reports into ``Reading`` values (``step_readings``,
``sft_readings``, ``SamplerMeter``, ``ExecutorMeter``). driver/role_metrics.py documents every
metric and records them inside the roles' actors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from actors.sampler import RoundReport
from learner.reports import SFTReport, StepReport

__all__ = [
    "EXECUTOR_INTERVAL_S",
    "METRICS",
    "ROLE_TAGS",
    "ExecutorMeter",
    "MetricSpec",
    "Reading",
    "SamplerMeter",
    "prometheus_names",
    "sft_readings",
    "step_readings",
]

ROLE_TAGS = ("role", "run_id", "index")
EXECUTOR_INTERVAL_S = 5.0
"""how often an executor actor reads its worker's counters (Ray exports about every 10 s)"""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["gauge", "counter"]
    description: str
    tags: tuple[str, ...] = ()
    """tags beyond ``ROLE_TAGS``"""


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("coderl_learner_loss", "gauge", "the last update's losses", ("loss",)),
        MetricSpec("coderl_learner_update_seconds", "gauge", "training time of the last update", ("update",)),
        MetricSpec("coderl_learner_wait_seconds", "gauge", "wait for executed samples", ("update",)),
        MetricSpec("coderl_learner_sync_seconds", "gauge", "time to hand out the weights", ("method",)),
        MetricSpec("coderl_learner_policy_version", "gauge", "the learner's policy version"),
        MetricSpec("coderl_learner_updates", "counter", "updates done (sft: steps)", ("update",)),
        MetricSpec("coderl_learner_samples", "counter", "sampled programs trained on"),
        MetricSpec("coderl_learner_errors", "counter", "learner calls that raised", ("call",)),
        MetricSpec("coderl_sampler_samples_per_s", "gauge", "programs per second of the last round"),
        MetricSpec("coderl_sampler_tokens_per_s", "gauge", "tokens per second of generation, last round"),
        MetricSpec("coderl_sampler_idle_fraction", "gauge", "share of time outside rounds"),
        MetricSpec("coderl_sampler_policy_lag", "gauge", "versions behind the newest received"),
        MetricSpec("coderl_sampler_policy_version", "gauge", "the version the last round sampled with"),
        MetricSpec("coderl_sampler_weights_seconds", "gauge", "time applying weights before the last round"),
        MetricSpec("coderl_sampler_rounds", "counter", "sampling rounds done"),
        MetricSpec("coderl_sampler_samples", "counter", "programs published"),
        MetricSpec("coderl_sampler_tokens", "counter", "tokens generated"),
        MetricSpec("coderl_sampler_errors", "counter", "sampling rounds that raised"),
        MetricSpec("coderl_executor_programs_per_s", "gauge", "programs scored per second", ("verdict",)),
        MetricSpec("coderl_executor_programs", "counter", "programs scored", ("verdict",)),
        MetricSpec("coderl_executor_queue_depth", "gauge", "execution requests waiting"),
        MetricSpec("coderl_executor_in_flight", "gauge", "requests this worker holds"),
        MetricSpec("coderl_executor_sandbox_recycles", "counter", "sandboxes replaced"),
        MetricSpec("coderl_executor_errors", "counter", "execution errors", ("kind",)),
    )
}


def prometheus_names(spec: MetricSpec) -> tuple[str, ...]:
    """The names Ray's Prometheus endpoint serves a metric under."""
    return (f"ray_{spec.name}_total",) if spec.kind == "counter" else (f"ray_{spec.name}",)


@dataclass(frozen=True)
class Reading:
    """One value for one metric: a gauge's new value, or a counter's increment."""

    metric: str
    value: float
    tags: Mapping[str, str] = field(default_factory=dict)


def step_readings(report: StepReport, update: str) -> list[Reading]:
    """A critic or RL update's metrics (``update``: rl or critic)."""
    readings = [
        Reading("coderl_learner_loss", value, {"loss": key.removeprefix("loss/")})
        for key, value in report.stats.items()
        if key.startswith("loss/")
    ]
    readings += [
        Reading("coderl_learner_update_seconds", report.train_s, {"update": update}),
        Reading("coderl_learner_wait_seconds", report.wait_s, {"update": update}),
        Reading("coderl_learner_policy_version", report.status.policy_version),
        Reading("coderl_learner_updates", 1, {"update": update}),
        Reading("coderl_learner_samples", report.samples),
    ]
    return readings


def sft_readings(report: SFTReport) -> list[Reading]:
    """A stretch of warm-start steps: its last logged loss and its time per step."""
    readings = [Reading("coderl_learner_policy_version", report.status.policy_version)]
    if report.losses:
        readings.append(Reading("coderl_learner_loss", report.losses[-1][1], {"loss": "sft"}))
    if report.steps:
        per_step = report.seconds / report.steps
        readings.append(Reading("coderl_learner_update_seconds", per_step, {"update": "sft"}))
        readings.append(Reading("coderl_learner_updates", report.steps, {"update": "sft"}))
    return readings


class SamplerMeter:
    """A sampler's rounds as readings: rates, idle share between rounds, and the lag of its last
    round behind the newest weights it has received."""

    def __init__(self, now: float) -> None:
        self.round_ended = now
        """when the previous round ended (the meter's creation before the first)"""
        self.last_version: int | None = None
        self.newest_version: int | None = None

    def round(self, report: RoundReport, started: float, ended: float) -> list[Reading]:
        idle_s = max(0.0, started - self.round_ended)
        busy_s = max(ended - started, 1e-9)
        self.round_ended = ended
        self.last_version = report.policy_version
        round_s = max(report.generate_s + report.publish_s, 1e-9)
        return [
            Reading("coderl_sampler_samples_per_s", report.samples / round_s),
            Reading("coderl_sampler_tokens_per_s", report.tokens / max(report.generate_s, 1e-9)),
            Reading("coderl_sampler_idle_fraction", idle_s / (idle_s + busy_s)),
            Reading("coderl_sampler_policy_version", report.policy_version),
            Reading("coderl_sampler_weights_seconds", report.weights_s),
            Reading("coderl_sampler_rounds", 1),
            Reading("coderl_sampler_samples", report.samples),
            Reading("coderl_sampler_tokens", report.tokens),
            *self.received(report.policy_version),
        ]

    def received(self, version: int) -> list[Reading]:
        """Weights of ``version`` arrived (applied now or staged for the next round)."""
        self.newest_version = version if self.newest_version is None else max(self.newest_version, version)
        if self.last_version is None:
            return []
        return [Reading("coderl_sampler_policy_lag", max(0, self.newest_version - self.last_version))]


_EXECUTOR_ERRORS = {
    "sandbox_errors": "sandbox_errors",
    "worker_errors": "worker_errors",
    "dead_lettered": "dead_lettered",
    "pool_sandbox_start_failures": "sandbox_start_failures",
}


class ExecutorMeter:
    """An executor worker's cumulative counters (``ExecutorWorker.metrics()``) as readings: the
    increments since the previous reading, and rates over the time between them."""

    def __init__(self, now: float) -> None:
        self.previous: dict[str, float] = {}
        self.read_at = now

    def readings(self, counters: Mapping[str, float], now: float, waiting: int | None) -> list[Reading]:
        interval = max(now - self.read_at, 1e-9)
        delta = {key: counters[key] - self.previous.get(key, 0.0) for key in counters}
        self.previous, self.read_at = dict(counters), now
        readings = []
        for key, increment in delta.items():
            if key.startswith("verdict_"):
                tags = {"verdict": key.removeprefix("verdict_")}
                readings.append(Reading("coderl_executor_programs_per_s", increment / interval, tags))
                readings.append(Reading("coderl_executor_programs", increment, tags))
            elif key in _EXECUTOR_ERRORS:
                readings.append(Reading("coderl_executor_errors", increment, {"kind": _EXECUTOR_ERRORS[key]}))
        readings.append(Reading("coderl_executor_sandbox_recycles", delta.get("pool_sandbox_recycles", 0.0)))
        readings.append(Reading("coderl_executor_in_flight", counters.get("in_flight", 0.0)))
        if waiting is not None:
            readings.append(Reading("coderl_executor_queue_depth", waiting))
        return readings
