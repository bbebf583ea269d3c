"""The learner's sample buffer: complete groups, baselines, staleness and what gets acknowledged."""

from __future__ import annotations

import pytest

from coderl.execution import ExecutionResult
from coderl.outcomes import OutcomeClass, RewardConfig, Verdict
from coderl.rollouts import Delivery
from coderl.wire import ExecutionReport, SampledProgram
from learner.buffer import SampleBuffer

_entry = iter(range(1, 10_000))


def _delivery(task: str, round_id: str, kind: str, verdict: Verdict, version: int = 0) -> Delivery:
    sample = SampledProgram(
        sample_id=f"{task}/v{version}{round_id}/{kind}",
        task_id=task,
        group_id=f"{task}/v{version}{round_id}",
        policy_version=version,
        program="print(1)\n",
        prompt_token_ids=[5, 6],
        token_ids=[7, 1],
        logprobs=[-0.5, -0.1],
        sampling_logprobs=[-0.4, -0.1],
        finished=True,
        is_greedy=kind.startswith("greedy"),
    )
    result = ExecutionResult(verdict=verdict)
    report = ExecutionReport(sample_id=sample.sample_id, task_id=task, result=result, worker_id="w")
    return Delivery(f"{next(_entry)}-0", report, sample)


def test_the_buffer_scores_verdicts_with_the_rewards_it_is_given() -> None:
    """Executors return verdicts only: the run's reward settings are the ones that count."""
    rewards = RewardConfig(compile_error=-5.0, runtime_error=-2.0, failed_test=-1.0, passed=7.0)
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=False, max_policy_lag=1, rewards=rewards)
    buffer.add(_delivery("t", "r0", "sample0", Verdict.PASSED))
    buffer.add(_delivery("t", "r0", "sample1", Verdict.TIMEOUT))
    batch = buffer.take(current_version=0, max_samples=8)
    assert [s.reward for s in batch.sampled] == [7.0, -2.0]
    assert [s.outcome_class for s in batch.sampled] == [OutcomeClass.PASSED, OutcomeClass.RUNTIME_ERROR]


def test_the_group_is_the_rollouts_field_not_its_id() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=False, max_policy_lag=1)
    first = _delivery("t", "r0", "sample0", Verdict.PASSED)
    assert first.sample is not None
    odd = first.sample.model_copy(update={"sample_id": "anything-at-all", "group_id": "g"})
    buffer.add(Delivery("1-1", first.report, odd))
    second = _delivery("t", "r0", "sample1", Verdict.PASSED)
    assert second.sample is not None
    buffer.add(Delivery("1-2", second.report, second.sample.model_copy(update={"group_id": "g"})))
    assert buffer.ready_samples() == 2


def test_a_group_is_ready_only_with_all_samples_and_its_greedy_decode() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=True, max_policy_lag=1)
    buffer.add(_delivery("t", "r0", "sample0", Verdict.PASSED))
    buffer.add(_delivery("t", "r0", "sample1", Verdict.FAILED_TEST))
    assert buffer.ready_samples() == 0
    buffer.add(_delivery("t", "r0", "greedy0", Verdict.RUNTIME_ERROR))
    assert buffer.ready_samples() == 2
    batch = buffer.take(current_version=0, max_samples=8)
    assert [s.reward for s in batch.sampled] == [1.0, -0.3]
    assert all(s.baseline_reward == -0.6 for s in batch.sampled)
    assert [s.outcome_class for s in batch.sampled] == [OutcomeClass.PASSED, OutcomeClass.FAILED_TEST]
    assert len(batch.greedy) == 1 and batch.greedy[0].sample.is_greedy
    assert len(buffer.take_settled()) == 3 and buffer.counts["settled/samples"] == 2


def test_without_greedy_baseline_samples_alone_complete_a_group() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=False, max_policy_lag=1)
    buffer.add(_delivery("t", "r0", "sample0", Verdict.PASSED))
    buffer.add(_delivery("t", "r0", "sample1", Verdict.PASSED))
    assert buffer.ready_samples() == 2


def test_take_returns_whole_groups_oldest_first() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=False, max_policy_lag=5)
    for task in ("a", "b", "c"):
        for k in range(2):
            buffer.add(_delivery(task, "r0", f"sample{k}", Verdict.PASSED))
    batch = buffer.take(current_version=0, max_samples=5)
    assert [s.sample.task_id for s in batch.sampled] == ["a", "a", "b", "b"]
    assert buffer.ready_samples() == 2
    # Settled: only the groups taken; the waiting group stays pending in Redis.
    assert {sample for _, sample in buffer.take_settled()} == {
        "a/v0r0/sample0",
        "a/v0r0/sample1",
        "b/v0r0/sample0",
        "b/v0r0/sample1",
    }


@pytest.mark.parametrize("stale", ["drop", "correct"])
def test_stale_groups_are_dropped_or_kept(stale: str) -> None:
    buffer = SampleBuffer(samples_per_group=1, greedy_baseline=False, max_policy_lag=2, stale=stale)  # type: ignore[arg-type]
    buffer.add(_delivery("old", "r0", "sample0", Verdict.PASSED, version=1))
    buffer.add(_delivery("new", "r0", "sample0", Verdict.PASSED, version=3))
    batch = buffer.take(current_version=4, max_samples=8)  # lags 3 and 1
    if stale == "drop":
        assert [s.sample.task_id for s in batch.sampled] == ["new"]
        assert buffer.counts["dropped/stale_samples"] == 1 and batch.max_lag == 1
    else:
        assert [s.sample.task_id for s in batch.sampled] == ["old", "new"] and batch.max_lag == 3
    assert buffer.counts["settled/samples"] == 2


def test_an_infrastructure_fault_breaks_the_group_and_it_expires() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=True, max_policy_lag=1)
    buffer.add(_delivery("t", "r0", "sample0", Verdict.PASSED))
    buffer.add(_delivery("t", "r0", "greedy0", Verdict.SANDBOX_ERROR))
    buffer.add(_delivery("t", "r0", "sample1", Verdict.PASSED))
    assert buffer.ready_samples() == 0
    assert buffer.expire() == 1
    assert buffer.counts["dropped/sandbox_error"] == 1 and buffer.counts["dropped/incomplete_group"] == 1
    assert buffer.counts["settled/samples"] == 2
    assert len(buffer.take_settled()) == 3


def test_groups_missing_a_result_expire_after_the_timeout() -> None:
    buffer = SampleBuffer(samples_per_group=2, greedy_baseline=False, max_policy_lag=1, group_timeout_s=10)
    buffer.add(_delivery("t", "r0", "sample0", Verdict.PASSED))
    started = buffer.groups["t/v0r0"].started
    assert buffer.expire(now=started + 5) == 0
    assert buffer.expire(now=started + 11) == 1


def test_a_result_without_its_rollout_is_settled_and_counted() -> None:
    buffer = SampleBuffer(samples_per_group=1, greedy_baseline=False, max_policy_lag=1)
    delivery = _delivery("t", "r0", "sample0", Verdict.PASSED)
    buffer.add(Delivery(delivery.entry_id, delivery.report, None))
    assert buffer.counts["dropped/rollout_missing"] == 1
    assert buffer.take_settled() == [(delivery.entry_id, delivery.report.sample_id)]
