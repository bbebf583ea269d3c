"""The training run's Redis channel: samplers publish rollouts, executors score them, the learner
joins each result with its rollout.

Layout (beside coderl/streams.py, prefix "coderl" by default)::

  {prefix}:train:{run}:rollout:{sample}  SampledProgram JSON (token ids stay here, never in a sandbox)
  {prefix}:exec:results:train-{run}      stream of ExecutionReport; consumer group "learner"
                                         (workers publish only under {prefix}:exec:results)

A sampler writes the rollout and its ExecutionRequest in one pipeline. The learner reads results
through its consumer group and acknowledges them only once a checkpoint holds the update trained on
them (``ack``): after a crash the resumed learner reads its pending entries again, so no result is
lost, and none is trained twice into the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from . import streams
from .redis_client import reconnections
from .wire import ExecutionReport, ExecutionRequest, SampledProgram

__all__ = [
    "LEARNER_GROUP",
    "Delivery",
    "RolloutReader",
    "TrainStreams",
    "publish_rollouts",
    "queue_depths",
    "unsettled_rollouts",
]

LEARNER_GROUP = "learner"


@dataclass(frozen=True)
class TrainStreams:
    names: streams.StreamNames
    run_id: str

    @property
    def results(self) -> str:
        return self.names.client_results(f"train-{self.run_id}")

    def rollout(self, sample_id: str) -> str:
        return f"{self.names.prefix}:train:{self.run_id}:rollout:{sample_id}"


def publish_rollouts(
    client: redis.Redis, channel: TrainStreams, samples: Sequence[SampledProgram], ttl_s: int
) -> None:
    """Store each rollout and queue its program for execution against the hidden tests."""
    pipe = client.pipeline(transaction=False)
    for sample in samples:
        pipe.set(channel.rollout(sample.sample_id), sample.to_wire(), ex=ttl_s)
        request = ExecutionRequest(
            sample_id=sample.sample_id,
            task_id=sample.task_id,
            program=sample.program,
            which="hidden",
            results_stream=channel.results,
        )
        pipe.xadd(channel.names.requests, {streams.DATA_FIELD: request.to_wire()})
    pipe.execute()


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    report: ExecutionReport
    sample: SampledProgram | None
    """None when the rollout expired or was never stored"""


class RolloutReader:
    """The learner's side: results joined with their rollouts, pending ones first after a restart."""

    def __init__(self, client: redis.Redis, channel: TrainStreams, consumer: str = "learner") -> None:
        self.client = client
        self.channel = channel
        self.consumer = consumer
        # Our pending entries (delivered before a restart) come first, read once each: the cursor
        # moves past every replayed entry, as they stay pending until acknowledged.
        self._replay_after: str | None = "0"
        self._last_returned = "0"
        streams.ensure_group(client, channel.results, LEARNER_GROUP)

    def read(self, count: int, block_ms: int | None) -> list[Delivery]:
        replaying = self._replay_after is not None
        sent_before = reconnections(self.client)
        reply = self.client.xreadgroup(
            LEARNER_GROUP,
            self.consumer,
            {self.channel.results: self._replay_after or ">"},
            count=count,
            block=None if replaying else block_ms,
        )
        if not replaying and reconnections(self.client) != sent_before:
            # Sent again after a lost connection: entries delivered on it are pending for us but
            # were never seen. Read every pending entry after the last one returned, in order.
            self._replay_after = self._last_returned
            return self.read(count, block_ms)
        entries = [entry for _, batch in reply or [] for entry in batch]
        if replaying:
            if not entries:
                self._replay_after = None
                return self.read(count, block_ms)
            self._replay_after = streams.as_text(entries[-1][0])
        if not entries:
            return []
        self._last_returned = streams.as_text(entries[-1][0])
        reports = [ExecutionReport.model_validate_json(streams.decode_entry(fields)) for _, fields in entries]
        raw = self.client.mget([self.channel.rollout(report.sample_id) for report in reports])
        return [
            Delivery(
                streams.as_text(entry_id),
                report,
                None if blob is None else SampledProgram.model_validate_json(blob),
            )
            for (entry_id, _), report, blob in zip(entries, reports, raw, strict=True)
        ]

    def ack(self, deliveries: Sequence[tuple[str, str]]) -> None:
        """Acknowledge ``(entry_id, sample_id)`` pairs: the entries and their rollouts are deleted."""
        if not deliveries:
            return
        entry_ids = [entry for entry, _ in deliveries]
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.channel.results, LEARNER_GROUP, *entry_ids)
        pipe.xdel(self.channel.results, *entry_ids)
        pipe.delete(*(self.channel.rollout(sample) for _, sample in deliveries))
        pipe.execute()

    def pending(self) -> int:
        info = self.client.xpending(self.channel.results, LEARNER_GROUP)
        return int(info["pending"])


def queue_depths(client: redis.Redis, channel: TrainStreams) -> dict[str, float]:
    """The run's queues, as metrics: execution requests not yet taken by a worker and running in a
    sandbox (the requests stream is shared by every client of the executor service), results the
    learner has not read yet, and executor workers with a live heartbeat."""
    stats = streams.queue_stats(client, channel.names)
    _, _, results_unread = streams.group_backlog(client, channel.results, LEARNER_GROUP)
    return {
        "queue/requests_waiting": float(stats.lag),
        "queue/requests_running": float(stats.pending),
        "queue/results_unread": float(results_unread),
        "queue/executor_workers": float(stats.workers),
    }


def unsettled_rollouts(client: redis.Redis, channel: TrainStreams) -> int:
    """Rollouts of the run not yet acknowledged by the learner, greedy decodes included: at the
    start of a phase (after a checkpoint acknowledged what was settled, or on resume) the work
    already out that the learner will still read."""
    return sum(1 for _ in client.scan_iter(match=channel.rollout("*"), count=1000))
