"""Joins execution results with their rollouts into complete groups, scores them, and bounds
staleness.

A group (``SampledProgram.group_id``) is one problem's samples from one sampling round plus, with
the greedy baseline, that round's greedy decode. The actor trains on complete groups only: the
greedy reward or the group mean is the baseline of every sample in it. The greedy decode is not
trained on by the actor (it is W^b, not W^s), but the critic learns from it.

Scoring happens here, once, under the run's reward settings: executors return verdicts only.

Staleness: a sample's lag is the learner's version minus the version that sampled it. Groups over
``max_policy_lag`` are dropped, or kept for an importance-corrected loss (``stale="correct"``).
A result is *settled* once its group is trained on or dropped; settled results are acknowledged after
the next checkpoint (coderl/rollouts.py). Results of groups still waiting stay pending in Redis, so a
restarted learner reads them again.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from coderl.outcomes import RewardConfig, Verdict
from coderl.rollouts import Delivery

from .batch import ScoredSample, TrainBatch, score

__all__ = ["SampleBuffer"]


@dataclass
class _Group:
    started: float
    samples: list[ScoredSample] = field(default_factory=list)
    greedy: ScoredSample | None = None
    broken: bool = False
    """a member had an infrastructure fault: the group cannot be completed"""
    entries: list[tuple[str, str]] = field(default_factory=list)
    """(result entry id, sample id) of every member"""


class SampleBuffer:
    def __init__(
        self,
        samples_per_group: int,
        greedy_baseline: bool,
        max_policy_lag: int,
        rewards: RewardConfig | None = None,
        stale: Literal["drop", "correct"] = "drop",
        group_timeout_s: float = 600.0,
    ) -> None:
        self.samples_per_group = samples_per_group
        self.greedy_baseline = greedy_baseline
        self.max_policy_lag = max_policy_lag
        self.rewards = rewards or RewardConfig()
        self.stale = stale
        self.group_timeout_s = group_timeout_s
        self.groups: OrderedDict[str, _Group] = OrderedDict()
        self.complete: OrderedDict[str, _Group] = OrderedDict()
        self.settled: list[tuple[str, str]] = []
        """(entry id, sample id) of results trained on or dropped, to acknowledge after a checkpoint"""
        self.counts: Counter[str] = Counter()

    # -- intake --------------------------------------------------------------------------------------

    def add(self, delivery: Delivery) -> None:
        entry = (delivery.entry_id, delivery.report.sample_id)
        sample, result = delivery.sample, delivery.report.result
        if sample is None:
            self.counts["dropped/rollout_missing"] += 1
            self.counts["settled/samples"] += 1
            self.settled.append(entry)
            return
        key = sample.group_id
        if key in self.complete:
            self.counts["dropped/duplicate"] += 1
            self.counts["settled/samples"] += int(not sample.is_greedy)
            self.settled.append(entry)
            return
        group = self.groups.setdefault(key, _Group(started=time.monotonic()))
        group.entries.append(entry)
        self.counts[f"verdict/{result.verdict.value}"] += 1
        if result.verdict == Verdict.SANDBOX_ERROR:
            group.broken = True
            self.counts["dropped/sandbox_error"] += 1
            self.counts["settled/samples"] += int(not sample.is_greedy)
            return
        member = score(sample, result.verdict, self.rewards)
        if sample.is_greedy:
            group.greedy = member
        else:
            group.samples.append(member)
        if self._is_complete(group):
            self.complete[key] = self.groups.pop(key)

    def _is_complete(self, group: _Group) -> bool:
        if len(group.samples) < self.samples_per_group:
            return False
        return group.greedy is not None or not self.greedy_baseline

    def expire(self, now: float | None = None) -> int:
        """Drop groups that cannot complete (an infrastructure fault, or results lost); how many."""
        now = time.monotonic() if now is None else now
        dead = [k for k, g in self.groups.items() if g.broken or now - g.started > self.group_timeout_s]
        for key in dead:
            group = self.groups.pop(key)
            self.settled += group.entries
            self.counts["dropped/incomplete_group"] += 1
            self.counts["dropped/samples"] += len(group.samples) + (group.greedy is not None)
            self.counts["settled/samples"] += len(group.samples)
        return len(dead)

    # -- output --------------------------------------------------------------------------------------

    def ready_samples(self) -> int:
        return sum(len(g.samples) for g in self.complete.values())

    def take(self, current_version: int, max_samples: int) -> TrainBatch:
        """Complete groups, oldest first, up to ``max_samples`` sampled programs (whole groups)."""
        batch = TrainBatch(sampled=[])
        while self.complete:
            key, group = next(iter(self.complete.items()))
            if batch.sampled and len(batch.sampled) + len(group.samples) > max_samples:
                break
            del self.complete[key]
            self.settled += group.entries
            self.counts["settled/samples"] += len(group.samples)
            lag = current_version - min(s.sample.policy_version for s in group.samples)
            if lag > self.max_policy_lag and self.stale == "drop":
                self.counts["dropped/stale_groups"] += 1
                self.counts["dropped/stale_samples"] += len(group.samples)
                continue
            batch.max_lag = max(batch.max_lag, lag)
            greedy_reward = group.greedy.reward if group.greedy is not None else None
            batch.sampled += [dataclasses.replace(s, baseline_reward=greedy_reward) for s in group.samples]
            if group.greedy is not None:
                batch.greedy.append(group.greedy)
        return batch

    def take_settled(self) -> list[tuple[str, str]]:
        """Results settled since the last call (to acknowledge once a checkpoint covers them)."""
        settled, self.settled = self.settled, []
        return settled
