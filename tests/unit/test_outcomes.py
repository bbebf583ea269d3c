"""coderl/outcomes.py: verdict -> CodeRL class, rewards, infrastructure faults, program verdicts."""

from __future__ import annotations

import pydantic
import pytest

from coderl.outcomes import (
    InfrastructureFault,
    OutcomeClass,
    RewardConfig,
    Verdict,
    outcome_class,
    program_verdict,
    reward,
)

# ---- classes -------------------------------------------------------------------------------------------


def test_class_numbers_match_the_official_code() -> None:
    assert [int(c) for c in OutcomeClass] == [0, 1, 2, 3]
    assert OutcomeClass.COMPILE_ERROR == 0
    assert OutcomeClass.RUNTIME_ERROR == 1
    assert OutcomeClass.FAILED_TEST == 2
    assert OutcomeClass.PASSED == 3


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (Verdict.PASSED, OutcomeClass.PASSED),
        (Verdict.FAILED_TEST, OutcomeClass.FAILED_TEST),
        (Verdict.RUNTIME_ERROR, OutcomeClass.RUNTIME_ERROR),
        (Verdict.COMPILE_ERROR, OutcomeClass.COMPILE_ERROR),
        (Verdict.TIMEOUT, OutcomeClass.RUNTIME_ERROR),
        (Verdict.MEMORY_LIMIT, OutcomeClass.RUNTIME_ERROR),
        (Verdict.OUTPUT_LIMIT, OutcomeClass.RUNTIME_ERROR),
    ],
)
def test_every_scored_verdict_maps_to_its_class(verdict: Verdict, expected: OutcomeClass) -> None:
    assert outcome_class(verdict) is expected


def test_limits_are_runtime_errors_class_1() -> None:
    for verdict in (Verdict.TIMEOUT, Verdict.MEMORY_LIMIT, Verdict.OUTPUT_LIMIT):
        assert int(outcome_class(verdict)) == 1


def test_every_verdict_but_sandbox_error_has_a_class() -> None:
    scored = [v for v in Verdict if v != Verdict.SANDBOX_ERROR]
    assert len(scored) == 7
    for verdict in scored:
        assert isinstance(outcome_class(verdict), OutcomeClass)


def test_verdict_strings_are_accepted() -> None:
    assert outcome_class("PASSED") is OutcomeClass.PASSED  # type: ignore[arg-type]
    assert outcome_class("TIMEOUT") is OutcomeClass.RUNTIME_ERROR  # type: ignore[arg-type]
    assert reward("COMPILE_ERROR") == -1.0  # type: ignore[arg-type]


def test_an_unknown_verdict_string_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        outcome_class("BOGUS")  # type: ignore[arg-type]


# ---- sandbox errors -------------------------------------------------------------------------------------


def test_sandbox_error_has_no_class() -> None:
    with pytest.raises(InfrastructureFault) as info:
        outcome_class(Verdict.SANDBOX_ERROR)
    message = str(info.value)
    assert "SANDBOX_ERROR" in message
    assert "retry" in message
    assert "mask" in message
    assert "never score" in message


def test_sandbox_error_has_no_reward_even_with_a_custom_config() -> None:
    with pytest.raises(InfrastructureFault, match="retry"):
        reward(Verdict.SANDBOX_ERROR)
    with pytest.raises(InfrastructureFault, match="mask"):
        reward(Verdict.SANDBOX_ERROR, RewardConfig(passed=5.0))


def test_infrastructure_fault_is_a_value_error() -> None:
    assert issubclass(InfrastructureFault, ValueError)
    with pytest.raises(ValueError):
        outcome_class(Verdict.SANDBOX_ERROR)


# ---- rewards --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (Verdict.COMPILE_ERROR, -1.0),
        (Verdict.RUNTIME_ERROR, -0.6),
        (Verdict.TIMEOUT, -0.6),
        (Verdict.MEMORY_LIMIT, -0.6),
        (Verdict.OUTPUT_LIMIT, -0.6),
        (Verdict.FAILED_TEST, -0.3),
        (Verdict.PASSED, 1.0),
    ],
)
def test_default_rewards_are_coderls(verdict: Verdict, expected: float) -> None:
    assert reward(verdict) == expected
    assert reward(verdict, None) == expected
    assert reward(verdict, RewardConfig()) == expected


def test_default_reward_config_values() -> None:
    config = RewardConfig()
    assert (config.compile_error, config.runtime_error, config.failed_test, config.passed) == (
        -1.0,
        -0.6,
        -0.3,
        1.0,
    )
    assert config.for_class(OutcomeClass.COMPILE_ERROR) == -1.0
    assert config.for_class(OutcomeClass.RUNTIME_ERROR) == -0.6
    assert config.for_class(OutcomeClass.FAILED_TEST) == -0.3
    assert config.for_class(OutcomeClass.PASSED) == 1.0


def test_custom_reward_config() -> None:
    config = RewardConfig(compile_error=-2.0, runtime_error=-0.5, failed_test=0.1, passed=10.0)
    assert reward(Verdict.COMPILE_ERROR, config) == -2.0
    assert reward(Verdict.RUNTIME_ERROR, config) == -0.5
    assert reward(Verdict.TIMEOUT, config) == -0.5
    assert reward(Verdict.MEMORY_LIMIT, config) == -0.5
    assert reward(Verdict.OUTPUT_LIMIT, config) == -0.5
    assert reward(Verdict.FAILED_TEST, config) == 0.1
    assert reward(Verdict.PASSED, config) == 10.0


def test_partial_custom_reward_config_keeps_other_defaults() -> None:
    config = RewardConfig(passed=2.0)
    assert reward(Verdict.PASSED, config) == 2.0
    assert reward(Verdict.FAILED_TEST, config) == -0.3
    assert reward(Verdict.COMPILE_ERROR, config) == -1.0


def test_reward_config_is_strict_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        RewardConfig(timeout=-0.6)  # type: ignore[call-arg]
    config = RewardConfig()
    with pytest.raises(pydantic.ValidationError):
        config.passed = 2.0  # type: ignore[misc]


# ---- program verdicts -----------------------------------------------------------------------------------


def test_program_verdict_all_passed() -> None:
    assert program_verdict([Verdict.PASSED]) == Verdict.PASSED
    assert program_verdict([Verdict.PASSED] * 5) == Verdict.PASSED


def test_program_verdict_is_the_first_non_passing_test() -> None:
    assert (
        program_verdict([Verdict.PASSED, Verdict.FAILED_TEST, Verdict.RUNTIME_ERROR]) == Verdict.FAILED_TEST
    )
    assert (
        program_verdict([Verdict.PASSED, Verdict.RUNTIME_ERROR, Verdict.FAILED_TEST]) == Verdict.RUNTIME_ERROR
    )
    assert program_verdict([Verdict.TIMEOUT, Verdict.COMPILE_ERROR]) == Verdict.TIMEOUT
    assert program_verdict([Verdict.PASSED, Verdict.PASSED, Verdict.MEMORY_LIMIT]) == Verdict.MEMORY_LIMIT
    assert program_verdict([Verdict.OUTPUT_LIMIT, Verdict.PASSED]) == Verdict.OUTPUT_LIMIT


def test_program_verdict_is_not_the_worst_test() -> None:
    # the first failure wins even when a later one would score lower
    verdicts = [Verdict.PASSED, Verdict.FAILED_TEST, Verdict.COMPILE_ERROR]
    assert program_verdict(verdicts) == Verdict.FAILED_TEST
    assert reward(program_verdict(verdicts)) == -0.3


def test_program_verdict_passes_through_sandbox_error() -> None:
    assert program_verdict([Verdict.PASSED, Verdict.SANDBOX_ERROR]) == Verdict.SANDBOX_ERROR


def test_program_without_tests_is_a_sandbox_error_not_a_pass() -> None:
    assert program_verdict([]) == Verdict.SANDBOX_ERROR
    with pytest.raises(InfrastructureFault):
        reward(program_verdict([]))
