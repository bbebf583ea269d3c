"""The critic's share (bench/learning/critic_share.py, bench/learning/credit.py): the divergence
point of a failing program, the token-weight summaries and the accuracy views, with hand-computed
values; and the script end to end on a made-up run (a tiny untrained policy and critic) with its
programs judged in Docker sandboxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.learning.credit import (
    PairCredit,
    closest_passing,
    common_prefix_length,
    divergence_pairs,
    pair_credit,
    passed_labels,
    summarize_credit,
)
from bench.learning.critic_share import Measurement, accuracy_summary, run_dirs, summary


def test_common_prefix_length_is_the_first_differing_index() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([7], [1, 7]) == 0
    assert common_prefix_length([], [1]) == 0


def test_closest_passing_takes_the_longest_shared_prefix_first_on_ties() -> None:
    failing = [1, 2, 3, 9]
    assert closest_passing(failing, [[1, 5], [1, 2, 3, 4], [1, 2, 7]]) == (1, 3)
    assert closest_passing(failing, [[1, 2, 5], [1, 2, 6]]) == (0, 2)
    assert closest_passing(failing, []) is None
    assert closest_passing([1, 2], [[1, 2, 3]]) is None  # no failing token differs


def test_divergence_pairs_pair_each_failing_program_with_its_closest_passing_one() -> None:
    programs = [[1, 2, 3], [1, 2, 4], [1, 9], [5, 9]]
    passed = [True, False, False, True]
    assert divergence_pairs(programs, passed) == [(1, 0, 2), (2, 0, 1)]
    assert divergence_pairs([[1, 2], [5]], [False, True]) == [(0, 1, 0)]
    assert divergence_pairs(programs, [True] * 4) == []
    assert divergence_pairs(programs, [False] * 4) == []
    with pytest.raises(ValueError, match="4 programs but 3 outcomes"):
        divergence_pairs(programs, [True, False, True])


def test_pair_credit_at_the_divergence_against_the_programs_mean() -> None:
    credit = pair_credit([0.2, 0.4, 0.9, 0.5], 2)  # mean (0.2 + 0.4 + 0.9 + 0.5) / 4 = 0.5
    assert credit.at_d == pytest.approx(0.9)
    assert credit.mean == pytest.approx(0.5)
    assert credit.jump == pytest.approx(0.5)  # 0.9 - 0.4
    assert credit.ratio == pytest.approx(1.8)
    first = pair_credit([0.3, 0.1], 0)
    assert first.jump is None and first.ratio == pytest.approx(1.5)  # 0.3 / 0.2
    with pytest.raises(ValueError, match="outside"):
        pair_credit([0.3, 0.1], 2)


def test_uniform_weights_give_no_share_to_the_divergence() -> None:
    """Without a critic every weight is 1: ratio 1, never above the mean, no jump."""
    summarized = summarize_credit([pair_credit([1.0] * 5, 3), pair_credit([1.0] * 2, 0)])
    assert summarized["mean_ratio"] == pytest.approx(1.0)
    assert summarized["above"] == 0.0
    assert summarized["mean_jump"] == pytest.approx(0.0)
    assert summarized["jump_pairs"] == 1


def test_summarize_credit_means_over_pairs() -> None:
    pairs = [PairCredit(at_d=0.9, mean=0.5, jump=0.5), PairCredit(at_d=0.2, mean=0.4, jump=None)]
    summarized = summarize_credit(pairs)
    assert summarized["pairs"] == 2
    assert summarized["mean_at_d"] == pytest.approx(0.55)
    assert summarized["mean_weight"] == pytest.approx(0.45)
    assert summarized["mean_ratio"] == pytest.approx((1.8 + 0.5) / 2)
    assert summarized["above"] == pytest.approx(0.5)
    assert summarized["mean_jump"] == pytest.approx(0.5)
    assert summarize_credit([])["mean_ratio"] is None


def test_accuracy_summary_beside_the_majority_class_and_binary() -> None:
    # observed 2 2 2 3, predicted 3 2 2 3: 3 of 4 right; the majority (class 2) is right 3 of 4.
    # binary: observed 0 0 0 1, predicted 1 0 0 1: 3 of 4; always "failed" is right 3 of 4.
    s = accuracy_summary([2, 2, 2, 3], [3, 2, 2, 3], 4)
    assert s["programs"] == 4 and s["pass_rate"] == pytest.approx(0.25)
    assert (s["classes"]["accuracy"], s["classes"]["majority_accuracy"]) == (0.75, 0.75)
    assert s["classes"]["majority_class"] == 2
    assert s["binary"]["confusion"] == [[2, 1], [0, 1]]
    assert (s["binary"]["accuracy"], s["binary"]["majority_accuracy"]) == (0.75, 0.75)
    assert passed_labels([0, 3, 2, 3], 3) == [0, 1, 0, 1]
    binary_critic = accuracy_summary([1, 0, 0], [1, 1, 0], 2)  # the binary head: passed is 1
    assert binary_critic["pass_rate"] == pytest.approx(1 / 3)
    assert binary_critic["binary"]["accuracy"] == pytest.approx(2 / 3)


def test_summary_splits_by_group_in_the_variants_order() -> None:
    m = Measurement(num_classes=4, problems=2, labels=[3, 2, 2], predictions=[3, 3, 2])
    m.groups = ["tests_only", "seen_with_solutions", "seen_with_solutions"]
    s = summary(m)
    assert list(s["by_group"]) == ["seen_with_solutions", "tests_only"]
    assert s["by_group"]["seen_with_solutions"]["classes"]["accuracy"] == pytest.approx(0.5)
    assert s["by_group"]["tests_only"]["classes"]["accuracy"] == pytest.approx(1.0)
    assert s["classes"]["accuracy"] == pytest.approx(2 / 3)


def test_run_dirs_finds_arm_seed_runs_by_arm_then_seed(tmp_path: Path) -> None:
    for name in ("critic-10", "critic-2", "rl-only-critic-0", "critic-x", "sft-0", "nocritic-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "critic-3.log").write_text("")
    found = [(arm, seed) for arm, seed, _ in run_dirs(tmp_path, ["rl-only-critic", "critic"])]
    assert found == [("rl-only-critic", 0), ("critic", 2), ("critic", 10)]


@pytest.mark.docker
@pytest.mark.slow
def test_the_script_reports_a_made_up_run_end_to_end(tmp_path: Path) -> None:
    """A run directory as ``coderl train`` leaves it (config.yaml, checkpoints/after-critic with a
    policy and a critic; no after-rl): every held-out problem gets its samples judged and scored."""
    docker = pytest.importorskip("docker")
    try:
        docker.from_env(timeout=30).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "skip"
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc})")
    from actors.config import PolicyConfig
    from actors.policy import Policy
    from bench.learning.critic_share import main
    from coderl.config import dump_config, load_config
    from critic.config import CriticConfig
    from critic.model import Critic
    from driver.train_config import TrainConfig

    run = tmp_path / "critic-0"
    overrides = [
        f"run_dir={run}",
        "problems.suite.train_size=40",
        "problems.suite.held_out_size=6",
        "sampler.sampling.max_new_tokens=24",
        "execution.worker.executor.workers=2",
        "execution.worker.executor.limits.timeout_s=2",
    ]
    config = load_config(TrainConfig, None, overrides)
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(config) + "\n")
    checkpoint = run / "checkpoints" / "after-critic"
    Policy.load(PolicyConfig(model="tiny", device="cpu")).save(checkpoint / "policy")
    Critic.load(CriticConfig(model="tiny", device="cpu")).save(checkpoint / "critic")

    assert main(["--grid", str(tmp_path), "--arms", "critic", "--samples", "3", "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "critic_share.json").read_text())["rows"]
    assert [(r["seed"], r["phase"]) for r in rows] == [("0", "after-critic"), ("all", "after-critic")]
    for row in rows:
        assert row["problems"] == 6 and row["sandbox_errors"] == 0
        assert row["programs"] == 18 == sum(map(sum, row["classes"]["confusion"]))
        assert row["credit"]["pairs"] <= 18 - round(18 * row["pass_rate"])
