"""The end-of-run report of `coderl train`: the RL phase against its start, problem by problem."""

from __future__ import annotations

from driver.train_cli import format_rl_gain


def record(when: str, version: int, verdicts: dict[str, str]) -> dict:
    passed = sum(v == "PASSED" for v in verdicts.values())
    return {"when": when, "policy_version": version, "pass@1": passed / len(verdicts), "verdicts": verdicts}


def test_gains_and_losses_are_counted_against_the_start_of_rl() -> None:
    before = record("before", 0, {"a": "FAILED_TEST", "b": "FAILED_TEST", "c": "PASSED", "d": "PASSED"})
    start = record("after sft", 100, {"a": "FAILED_TEST", "b": "RUNTIME_ERROR", "c": "PASSED", "d": "PASSED"})
    mid = record("rl step 5", 105, {"a": "PASSED", "b": "PASSED", "c": "PASSED", "d": "PASSED"})
    end = record("after rl", 110, {"a": "PASSED", "b": "PASSED", "c": "PASSED", "d": "COMPILE_ERROR"})
    line = format_rl_gain([before, start, mid, end])
    # a and b gained, d lost: m = 3, k = 1, p = 2 * (1 + 3) / 8 > 1, capped at 1.
    assert line == "  RL vs after sft: 2 held-out problems gained, 1 lost (exact sign test p = 1)"


def test_no_line_without_an_rl_phase() -> None:
    start = record("after sft", 100, {"a": "PASSED"})
    assert format_rl_gain([start]) is None
    assert format_rl_gain([start, record("after rl", 100, {"a": "PASSED"})]) is None  # rl_steps=0
