"""The learner's rollout channel (coderl/rollouts.py) on a real Redis: join, replay after a restart,
acknowledgement."""

from __future__ import annotations

from typing import Any

import pytest

from coderl import streams
from coderl.execution import ExecutionResult, TestOutcome
from coderl.outcomes import Verdict
from coderl.rollouts import RolloutReader, TrainStreams, publish_rollouts, queue_depths
from coderl.wire import ExecutionReport, ExecutionRequest, SampledProgram

pytestmark = pytest.mark.redis

PASSED = ExecutionResult(verdict=Verdict.PASSED, tests=[TestOutcome(verdict=Verdict.PASSED)])


def rollout(index: int) -> SampledProgram:
    return SampledProgram(
        sample_id=f"p/v1/sample{index}",
        task_id="p",
        group_id="p/v1",
        policy_version=1,
        program="print(5)",
        prompt_token_ids=[5, 6],
        token_ids=[7, 1],
        logprobs=[-0.5, -0.1],
        sampling_logprobs=[-0.4, -0.1],
        finished=True,
    )


def execute_all(server: Any, channel: TrainStreams) -> None:
    """Play the executor: one report per queued request, on the stream the request names."""
    for _, data in server.entries(channel.names.requests):
        request = ExecutionRequest.model_validate_json(data)
        report = ExecutionReport(
            sample_id=request.sample_id,
            task_id=request.task_id,
            result=PASSED,
            worker_id="w",
        )
        server.client.xadd(request.results_stream, {streams.DATA_FIELD: report.to_wire()})


def test_results_join_rollouts_and_pending_ones_replay_once_after_a_restart(
    redis_server: Any,
) -> None:
    client = redis_server.client
    channel = TrainStreams(streams.StreamNames(), run_id="r1")
    reader = RolloutReader(client, channel)
    publish_rollouts(client, channel, [rollout(i) for i in range(5)], ttl_s=600)
    execute_all(redis_server, channel)

    first = reader.read(count=3, block_ms=100)
    assert [d.sample.sample_id for d in first if d.sample] == [f"p/v1/sample{i}" for i in range(3)]
    assert all(d.report.sample_id == d.sample.sample_id for d in first if d.sample)
    reader.ack([(first[0].entry_id, first[0].report.sample_id)])  # only one reached a checkpoint
    assert client.get(channel.rollout("p/v1/sample0")) is None

    restarted = RolloutReader(client, channel)
    seen = [d.report.sample_id for d in restarted.read(count=1, block_ms=100)]
    seen += [d.report.sample_id for d in restarted.read(count=1, block_ms=100)]
    # pending ones first, each once, then the rest of the stream; then nothing
    seen += [d.report.sample_id for d in restarted.read(count=10, block_ms=100)]
    assert seen == [f"p/v1/sample{i}" for i in (1, 2, 3, 4)]
    assert restarted.read(count=10, block_ms=50) == []
    assert restarted.pending() == 4


def test_a_result_whose_rollout_expired_is_delivered_without_it(redis_server: Any) -> None:
    client = redis_server.client
    channel = TrainStreams(streams.StreamNames(), run_id="r2")
    reader = RolloutReader(client, channel)
    publish_rollouts(client, channel, [rollout(0)], ttl_s=600)
    client.delete(channel.rollout("p/v1/sample0"))
    execute_all(redis_server, channel)
    (delivery,) = reader.read(count=5, block_ms=100)
    assert delivery.sample is None and delivery.report.sample_id == "p/v1/sample0"


def test_queue_depths_follow_requests_and_results_through_the_run(redis_server: Any) -> None:
    client = redis_server.client
    channel = TrainStreams(streams.StreamNames(prefix="qd"), run_id="r3")
    names = channel.names
    assert queue_depths(client, channel) == {
        "queue/requests_waiting": 0.0,
        "queue/requests_running": 0.0,
        "queue/results_unread": 0.0,
        "queue/executor_workers": 0.0,
    }
    reader = RolloutReader(client, channel)
    streams.ensure_group(client, names.requests, names.group)
    publish_rollouts(client, channel, [rollout(i) for i in range(5)], ttl_s=600)
    client.set(names.worker("w1"), "alive", ex=60)
    assert queue_depths(client, channel)["queue/requests_waiting"] == 5
    assert queue_depths(client, channel)["queue/executor_workers"] == 1

    # A worker takes two requests into its sandboxes...
    client.xreadgroup(names.group, "w1", {names.requests: ">"}, count=2)
    depths = queue_depths(client, channel)
    assert (depths["queue/requests_waiting"], depths["queue/requests_running"]) == (3, 2)
    # ...all five are executed (results published), the learner reads and acknowledges three.
    execute_all(redis_server, channel)
    assert queue_depths(client, channel)["queue/results_unread"] == 5
    read = reader.read(count=3, block_ms=100)
    assert queue_depths(client, channel)["queue/results_unread"] == 2
    reader.ack([(d.entry_id, d.report.sample_id) for d in read])
    assert queue_depths(client, channel)["queue/results_unread"] == 2
