"""Ray metrics set inside each role's own actor process: the learner ranks, the samplers and the
executor actors of a run, each tagged ``role`` (learner / sampler / executor), ``run_id`` (the
run's id) and ``index`` (learner rank, sampler id, executor index; not ``instance``, which
Prometheus sets to the scraped node).

The plain classes hold the logic and know nothing of Ray: ``SamplerMeter`` and ``ExecutorMeter``
turn what a role did into ``Reading`` values, and the ``*_readings`` functions turn a report into
them (unit-tested without Ray). The Ray side wraps the roles where actors are created
(driver/ray_roles.py): ``MeteredSampler`` and ``MeteredLearner`` record after each call, and an
``ExecutorRecorder`` thread reads the executor worker's counters every few seconds (executor/ never
imports Ray). Ray's per-node metrics agent serves them with the prefix ``ray_`` (counters also get
the suffix ``_total``) on the node's metrics export port, about every 10 s.

Metrics (name: kind, extra tags; what it measures):

Learner (after every update, warm-start stretch and weight packing/sending):
    coderl_learner_loss: gauge, loss; the last update's losses (rl, ce, total, critic, sft)
    coderl_learner_update_seconds: gauge, update; training time of the last update (rl, critic;
        sft: per step of the last stretch)
    coderl_learner_wait_seconds: gauge, update; time the last update waited for executed samples
    coderl_learner_sync_seconds: gauge, method; time to hand out the weights (pack: packed for the
        object store; collective: sent to the samplers' group)
    coderl_learner_policy_version: gauge; the policy version after the last call
    coderl_learner_updates: counter, update; updates done (sft: steps)
    coderl_learner_samples: counter; sampled programs trained on
    coderl_learner_errors: counter, call; calls that raised
Sampler (after every round, and whenever broadcast weights arrive):
    coderl_sampler_samples_per_s: gauge; programs published per second of the last round
    coderl_sampler_tokens_per_s: gauge; tokens generated per second of generation in the last round
    coderl_sampler_idle_fraction: gauge; share of the time from the previous round's end to the
        last round's end spent outside a round (waiting to be admitted, applying weights)
    coderl_sampler_policy_lag: gauge; policy versions between the weights of the last round and the
        newest version the sampler has received (0 while it has none newer)
    coderl_sampler_policy_version: gauge; the version the last round sampled with
    coderl_sampler_weights_seconds: gauge; time spent applying weights before the last round
    coderl_sampler_rounds, coderl_sampler_samples, coderl_sampler_tokens: counters; totals
    coderl_sampler_errors: counter; rounds that raised
Executor (every ``EXECUTOR_INTERVAL_S``; from ``ExecutorWorker.metrics()``):
    coderl_executor_programs_per_s: gauge, verdict; programs scored per second since the last reading
    coderl_executor_programs: counter, verdict; programs scored
    coderl_executor_queue_depth: gauge; execution requests waiting in the (shared) requests stream
    coderl_executor_in_flight: gauge; requests this worker holds (running or read ahead)
    coderl_executor_sandbox_recycles: counter; sandboxes replaced after their runs or a fault
    coderl_executor_errors: counter, kind; sandbox_errors, worker_errors, dead_lettered,
        sandbox_start_failures

Recording never stops a role: the first error disables recording in that process, with a warning.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis

from actors.sampler import RoundReport, Sampler
from coderl import streams
from executor.worker import ExecutorWorker
from learner.learner import Learner
from learner.reports import SFTReport, StepReport
from models.weight_sync import PackedWeights

from .role_readings import (
    EXECUTOR_INTERVAL_S,
    METRICS,
    ROLE_TAGS,
    ExecutorMeter,
    MetricSpec,
    Reading,
    SamplerMeter,
    prometheus_names,
    sft_readings,
    step_readings,
)

__all__ = [
    "EXECUTOR_INTERVAL_S",
    "METRICS",
    "ROLE_TAGS",
    "ExecutorMeter",
    "ExecutorRecorder",
    "MeteredLearner",
    "MeteredSampler",
    "MetricSpec",
    "Reading",
    "RoleRecorder",
    "SamplerMeter",
    "prometheus_names",
    "sft_readings",
    "step_readings",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class RoleRecorder:
    """Records readings as Ray metrics tagged with one role's ``role``, ``run_id`` and ``index``.

    Ray metric objects are created once per process (``_metric``). A counter reading is an
    increment (zero increments are skipped: Ray refuses them). The first error disables the
    recorder with a warning; training goes on."""

    def __init__(self, role: str, run_id: str, index: int | str) -> None:
        self.tags = {"role": role, "run_id": run_id, "index": str(index)}
        self.enabled = True

    def record(self, readings: Iterable[Reading]) -> None:
        if not self.enabled:
            return
        # The boundary between a role and its metrics: whatever Ray raises must not stop the role.
        try:
            for reading in readings:
                spec = METRICS[reading.metric]
                tags = {**self.tags, **reading.tags}
                if spec.kind == "gauge":
                    _metric(spec).set(float(reading.value), tags=tags)
                elif reading.value > 0:
                    _metric(spec).inc(float(reading.value), tags=tags)
        except Exception as exc:
            self.enabled = False
            log.warning("role metrics (%s) failed and are disabled: %r", self.tags, exc, exc_info=exc)


_metrics: dict[str, Any] = {}
_metrics_lock = threading.Lock()


def _metric(spec: MetricSpec) -> Any:
    """The process's Ray metric object of ``spec``, created on first use."""
    with _metrics_lock:
        if spec.name not in _metrics:
            from ray.util.metrics import Counter, Gauge

            kind = Gauge if spec.kind == "gauge" else Counter
            _metrics[spec.name] = kind(
                spec.name, description=f"CodeRL: {spec.description}", tag_keys=(*ROLE_TAGS, *spec.tags)
            )
        return _metrics[spec.name]


class MeteredSampler(Sampler):
    """A sampler that records its rounds (and the weights it receives) as Ray metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = RoleRecorder("sampler", self.channel.run_id, self.sampler_id)
        self.meter = SamplerMeter(time.monotonic())

    def generate_round(self) -> RoundReport:
        started = time.monotonic()
        try:
            report = super().generate_round()
        except Exception:
            self.recorder.record([Reading("coderl_sampler_errors", 1)])
            raise
        self.recorder.record(self.meter.round(report, started, time.monotonic()))
        return report

    def set_weights(self, weights: PackedWeights) -> int:
        version = super().set_weights(weights)
        self.recorder.record(self.meter.received(version))
        return version

    def receive_weights(self) -> int:
        version = super().receive_weights()
        self.recorder.record(self.meter.received(version))
        return version


class MeteredLearner(Learner):
    """A learner rank that records its updates, warm-start stretches and weight hand-outs as Ray
    metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = RoleRecorder("learner", self.channel.run_id, self.rank)

    def rl_update(self) -> StepReport:
        report = self._counting_errors("rl_update", super().rl_update)
        self.recorder.record(step_readings(report, "rl"))
        return report

    def critic_update(self) -> StepReport:
        report = self._counting_errors("critic_update", super().critic_update)
        self.recorder.record(step_readings(report, "critic"))
        return report

    def sft(self, steps: int, total_steps: int | None = None) -> SFTReport:
        report = self._counting_errors("sft", functools.partial(super().sft, steps, total_steps))
        self.recorder.record(sft_readings(report))
        return report

    def weights(self) -> PackedWeights:
        started = time.monotonic()
        packed = self._counting_errors("weights", super().weights)
        self._record_sync("pack", time.monotonic() - started)
        return packed

    def send_weights(self) -> int:
        started = time.monotonic()
        version = self._counting_errors("send_weights", super().send_weights)
        self._record_sync("collective", time.monotonic() - started)
        return version

    def _record_sync(self, method: str, seconds: float) -> None:
        self.recorder.record(
            [
                Reading("coderl_learner_sync_seconds", seconds, {"method": method}),
                Reading("coderl_learner_policy_version", self.policy.version),
            ]
        )

    def _counting_errors(self, call: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception:
            self.recorder.record([Reading("coderl_learner_errors", 1, {"call": call})])
            raise


class ExecutorRecorder:
    """Inside an executor actor: a thread that records the worker's counters every
    ``interval_s`` (and once more at ``stop``)."""

    def __init__(
        self, worker: ExecutorWorker, run_id: str, index: int, interval_s: float = EXECUTOR_INTERVAL_S
    ) -> None:
        self.worker = worker
        self.recorder = RoleRecorder("executor", run_id, index)
        self.meter = ExecutorMeter(time.monotonic())
        self.interval_s = interval_s
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="executor-metrics", daemon=True)
        self.thread.start()

    def record_now(self) -> None:
        waiting = self._waiting()
        readings = self.meter.readings(self.worker.metrics(), time.monotonic(), waiting)
        self.recorder.record(readings)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self._record_safely()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self._record_safely()

    def _record_safely(self) -> None:
        # The worker's counters are copied while its threads add to them; a failed reading is
        # skipped (the next one catches up: counters are cumulative) and never ends the thread.
        try:
            self.record_now()
        except Exception as exc:
            log.warning("executor metrics: reading skipped: %r", exc, exc_info=exc)

    def _waiting(self) -> int | None:
        """Requests not yet taken by any worker; None while Redis cannot answer (the worker's own
        loop reports that)."""
        names = self.worker.names
        try:
            return streams.group_backlog(self.worker.redis, names.requests, names.group)[2]
        except redis.RedisError:
            return None
