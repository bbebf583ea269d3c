"""The update loop of the critic and RL phases: keeps the samplers producing, the learner updating,
and the weights flowing back, in decoupled or synchronous mode.

Decoupled: every sampler always has a round in flight and the learner always has an update in
flight, subject to admission control: a sampler starts a round only while the sampled programs not
yet consumed by the learner stay under ``max_policy_lag * batch_size``, so lag stays bounded
without starving slow groups (admission control, as AReaL, rather than dropping late work).
Synchronous: generate one batch, wait for its execution and the update, broadcast, repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.sampler import RoundReport, SamplerState
from coderl.redis_client import redis_failure
from learner.reports import StepReport

from .health import RoleDied
from .roles import LearnerProxy, Pending, Roles
from .train_config import TrainConfig

__all__ = ["Admission", "PhaseClock", "Update", "run_updates"]

log = logging.getLogger(__name__)

MAX_SAMPLER_FAILURES = 5


@dataclass
class PhaseClock:
    """Busy time per role and counts over a phase, for idle fractions and throughput."""

    started: float = field(default_factory=time.monotonic)
    sampler_busy_s: float = 0.0
    learner_busy_s: float = 0.0
    learner_wait_s: float = 0.0
    exec_busy_s: float = 0.0
    """sandbox seconds of the results the learner read during the phase"""
    broadcast_s: float = 0.0
    executions: int = 0
    """results the learner read during the phase, greedy decodes included"""
    rounds: int = 0
    samples: int = 0
    tokens: int = 0

    def rates(self, num_samplers: int, sandboxes: int = 0) -> dict[str, float]:
        """Throughput and idle fractions; ``sandboxes``: executor slots (0: unknown, not reported)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rates = {
            "throughput/samples_per_s": self.samples / elapsed,
            "throughput/tokens_per_s": self.tokens / elapsed,
            "throughput/executions_per_s": self.executions / elapsed,
            "idle/sampler": max(0.0, 1.0 - self.sampler_busy_s / (elapsed * num_samplers)),
            "idle/learner": max(0.0, 1.0 - self.learner_busy_s / elapsed),
        }
        if sandboxes > 0:
            rates["idle/executor"] = max(0.0, 1.0 - self.exec_busy_s / (elapsed * sandboxes))
        return rates


OnUpdate = Callable[[StepReport, float, PhaseClock], None]
"""called after every update with its report and the broadcast time (0 when nothing was sent)"""

Update = Callable[[LearnerProxy], Pending[StepReport]]
"""which update a phase runs (driver/phases.py: ``rl_update`` or ``critic_update``)"""


@dataclass(frozen=True)
class Admission:
    """How far sampling may run ahead of the learner."""

    per_round: int
    """sampled programs one round yields (problems per round x samples per problem)"""
    batch: int
    """sampled programs per update"""
    cap: int
    """sampled programs admitted but not yet settled by the learner, at most"""
    decoupled: bool
    samples_per_group: int = 1
    greedy: bool = False
    """a greedy decode is published with every group (it is not a sampled program)"""

    def programs_in(self, rollouts: int) -> int:
        """Sampled programs among ``rollouts`` published ones (greedy decodes are not counted)."""
        if not self.greedy:
            return rollouts
        return rollouts * self.samples_per_group // (self.samples_per_group + 1)

    @classmethod
    def of(cls, config: TrainConfig) -> Admission:
        per_round = config.sampler.problems_per_round * config.sampler.sampling.n
        batch = config.learner.batch_size
        decoupled = config.mode == "decoupled"
        # A round admitted now is trained after the update in flight, the batches ahead of it, and
        # the broadcast the sampler has not applied yet (it arrives behind the round in progress):
        # with cap/batch batches outstanding, its lag reaches cap/batch.
        cap = max(1, config.learner.max_policy_lag) * batch if decoupled else batch
        n = config.sampler.sampling.n
        return cls(per_round, batch, cap, decoupled, samples_per_group=n, greedy=config.greedy_baseline)


def run_updates(
    roles: Roles,
    update: Update,
    steps: int,
    admission: Admission,
    on_update: OnUpdate,
    broadcast: bool,
    already_out: int = 0,
) -> PhaseClock:
    """``steps`` learner updates (``update``: which one) fed by the samplers. ``already_out``:
    sampled programs published before the phase and not yet settled (rounds left by the previous
    phase, or by a killed run on resume): admission counts them as work ahead of the learner."""
    per_round, batch, cap = admission.per_round, admission.batch, admission.cap
    decoupled = admission.decoupled
    clock = PhaseClock()
    # The learner's counts run over the whole run; start this phase's from them, or a phase after
    # the first would admit rounds without bound (and drop them as stale).
    start = roles.learner.status()
    settled = start.settled_samples
    produced = settled + already_out
    failures = 0
    idle = list(range(roles.num_samplers))
    positions: dict[int, SamplerState] = dict(enumerate(roles.sampler_states()))
    in_flight: list[Pending[RoundReport]] = []
    learner: Pending[StepReport] | None = None
    done_steps = 0
    while done_steps < steps:
        # 1. Admit sampling rounds while the work ahead of the learner stays under the cap.
        while idle and produced - settled < cap:
            in_flight.append(roles.submit_round(idle.pop(0)))
            produced += per_round
        # 2. Keep one update in flight (synchronous: only once a whole batch is out).
        if learner is None and (decoupled or produced - settled >= batch or not in_flight):
            learner = update(roles.learner)
        # 3. Wait for whatever finishes first.
        waiting: list[Pending[Any]] = [*in_flight, *([learner] if learner is not None else [])]
        for handle in roles.wait(waiting, timeout_s=None):
            if handle is not learner:
                in_flight.remove(handle)
                assert handle.sampler is not None
                idle.append(handle.sampler)
                try:
                    round_report: RoundReport = handle.result()
                    _count_round(round_report, clock)
                    positions[handle.sampler] = round_report.state
                except Exception as exc:  # a sampler died: bring it back, up to MAX_SAMPLER_FAILURES
                    if redis_failure(exc) is not None:
                        raise  # Redis is gone past the outage limit: a restart would not help
                    failures += 1
                    produced -= per_round
                    log.warning(
                        "sampler %d failed (%s: %s); recovering", handle.sampler, type(exc).__name__, exc
                    )
                    if failures > MAX_SAMPLER_FAILURES:
                        raise RoleDied(
                            f"sampler {handle.sampler} failed {failures} times in this phase, the last "
                            f"time with {_one_line(exc)}"
                        ) from exc
                    roles.recover_sampler(handle.sampler, positions[handle.sampler])
                continue
            report = _learner_result(handle)
            learner = None
            settled = report.status.settled_samples
            clock.learner_busy_s += report.train_s
            clock.learner_wait_s += report.wait_s
            clock.exec_busy_s = report.status.exec_busy_s - start.exec_busy_s
            clock.executions = report.status.executions - start.executions
            broadcast_s = 0.0
            if broadcast:
                _, broadcast_s = roles.broadcast()
                clock.broadcast_s += broadcast_s
            done_steps += 1
            on_update(report, broadcast_s, clock)
    _finish_rounds(in_flight, clock)
    return clock


ACTOR_DEATHS = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "ActorUnschedulableError")
"""Ray's errors for an actor that is gone beyond its restarts (matched by name: ray loads only
for Ray runs)"""


def _learner_result(handle: Pending[StepReport]) -> StepReport:
    """The update's report; a learner actor that died for good is a ``RoleDied`` (one line)."""
    try:
        return handle.result()
    except Exception as exc:
        if not any(cls.__name__ in ACTOR_DEATHS for cls in type(exc).__mro__):
            raise
        log.debug("the learner died", exc_info=True)
        raise RoleDied(f"the learner died beyond Ray's restarts: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _count_round(report: RoundReport, clock: PhaseClock) -> None:
    clock.rounds += 1
    clock.samples += report.samples
    clock.tokens += report.tokens
    clock.sampler_busy_s += report.generate_s + report.publish_s


def _finish_rounds(in_flight: list[Pending[RoundReport]], clock: PhaseClock) -> None:
    """Let rounds still running finish (their samples feed the next phase or are discarded)."""
    for handle in in_flight:
        try:
            _count_round(handle.result(), clock)
        except Exception as exc:  # noqa: BLE001 - the phase is over; a late failure only loses a round
            log.warning("sampler %s failed at the end of a phase: %s", handle.sampler, exc)
