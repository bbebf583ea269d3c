"""The suite's tests-only variant (problems/suite/variant.py) and the learning grid's per-group
paired report (bench/learning/groups.py)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bench.learning.groups import compare_by_group, group_names, report_groups, suite_groups
from coderl.cli import main
from coderl.config import dump_config, load_config
from coderl.paired import sign_test_p
from driver.train_config import ProblemsConfig, TrainConfig
from problems import load_problems
from problems.suite import Op, Suite, SuiteConfig, build_suite, canonical_program
from problems.suite.variant import GROUPS, SEEN_WITH_SOLUTIONS, TESTS_ONLY, held_out_group

STRENGTH = 12
"""the documented strength of the variant (/tmp/docs: the grid's --set)"""
DEFAULT_DIGEST = "b85f74df07372784"
"""sha256 prefix of every problem of SuiteConfig() before the variant existed (the default suite)"""


@pytest.fixture(scope="module")
def variant() -> Suite:
    return build_suite(tests_only_primitives=STRENGTH)


def digest(suite: Suite) -> str:
    dumped = [p.model_dump(mode="json") for p in suite.split("all")]
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def specs(problems: list[Any]) -> set[str]:
    return {spec for p in problems for spec in p.metadata["pipeline"]}


def test_default_suite_is_unchanged() -> None:
    suite = build_suite()
    assert digest(suite) == DEFAULT_DIGEST
    assert suite.tests_only == frozenset()
    assert all("group" not in p.metadata for p in suite.held_out)
    assert all("tests_only" not in p.metadata for p in suite.train)


def test_variant_is_deterministic_for_a_seed(variant: Suite) -> None:
    again, other = (
        build_suite(tests_only_primitives=STRENGTH),
        build_suite(seed=1, tests_only_primitives=STRENGTH),
    )
    assert digest(again) == digest(variant) and again.tests_only == variant.tests_only
    assert other.tests_only != variant.tests_only
    assert len(variant.tests_only) == STRENGTH


def test_tests_only_primitives_never_come_with_a_solution(variant: Suite) -> None:
    hidden = variant.tests_only
    assert not hidden & specs(variant.sft)
    assert hidden <= specs(variant.rl)  # each occurs in some RL problem
    for p in variant.train:
        uses = bool(hidden & set(p.metadata["pipeline"]))
        assert p.metadata["tests_only"] == uses, p.task_id
        assert not (uses and p.solutions), p.task_id
    shown = build_suite(
        tests_only_primitives=STRENGTH, withhold_rl_solutions=False, train_size=60, held_out_size=20
    )
    assert all(bool(p.solutions) != p.metadata["tests_only"] for p in shown.train)


def test_each_operation_keeps_a_constant_with_solutions(variant: Suite) -> None:
    for spec in variant.tests_only:
        op = Op.parse(spec)
        assert op.k is not None
        assert any(s.startswith(f"{op.name} ") and s not in variant.tests_only for s in specs(variant.sft)), (
            spec
        )


def test_held_out_groups_are_assigned_as_defined(variant: Suite) -> None:
    train_pipelines = {tuple(p.metadata["pipeline"]) for p in variant.train}
    sft_specs = specs(variant.sft)
    for p in variant.held_out:
        used = set(p.metadata["pipeline"])
        assert tuple(p.metadata["pipeline"]) not in train_pipelines, p.task_id
        assert used <= sft_specs | variant.tests_only, p.task_id  # every primitive seen in train
        expected = TESTS_ONLY if used & variant.tests_only else SEEN_WITH_SOLUTIONS
        assert p.metadata["group"] == expected == held_out_group(used, variant.tests_only), p.task_id
        assert p.solutions == [canonical_program(p)]
    sizes = Counter(p.metadata["group"] for p in variant.held_out)
    assert set(sizes) == set(GROUPS) and min(sizes.values()) >= 50, sizes
    assert (len(variant.train), len(variant.sft), len(variant.held_out)) == (400, 200, 300)


def test_variant_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="sft_fraction"):
        SuiteConfig(tests_only_primitives=4, sft_fraction=0.0)
    with pytest.raises(ValidationError):
        SuiteConfig(tests_only_primitives=-1)
    with pytest.raises(ValueError, match="lower tests_only_primitives"):
        build_suite(tests_only_primitives=30, train_size=12, held_out_size=4)


def test_cli_writes_the_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["suite", "--out", str(tmp_path), "--train-size", "60", "--held-out-size", "20"]
    assert main([*argv, "--tests-only-primitives", "3", "--log-level", "WARNING"]) == 0
    out = capsys.readouterr().out
    expected = build_suite(train_size=60, held_out_size=20, tests_only_primitives=3)
    assert f"tests-only primitives: {', '.join(sorted(expected.tests_only))}" in out
    held = load_problems(tmp_path / "held_out.jsonl")
    assert [p.metadata["group"] for p in held] == [p.metadata["group"] for p in expected.held_out]
    assert "tests_only_primitives: 3" in (tmp_path / "suite_config.yaml").read_text()


# -- the grid's per-group report ------------------------------------------------------------------------

GROUPS_OF = {
    "t1": TESTS_ONLY,
    "t2": TESTS_ONLY,
    "t3": TESTS_ONLY,
    "s1": SEEN_WITH_SOLUTIONS,
    "s2": SEEN_WITH_SOLUTIONS,
}


def record(passed: set[str]) -> dict[str, Any]:
    return {"verdicts": {task: "PASSED" if task in passed else "FAILED_TEST" for task in GROUPS_OF}}


def hand_made_results() -> dict[str, dict[int, dict[str, Any]]]:
    # seed 0: rl gains t1, t2 and loses s1; seed 1: rl gains t3, loses nothing; ce gains s2 in both.
    return {
        "sft": {0: record({"s1"}), 1: record({"s1", "t1"})},
        "ce": {0: record({"s1", "s2"}), 1: record({"s1", "t1", "s2"})},
        "rl-only": {0: record({"t1", "t2"}), 1: record({"s1", "t1", "t3"})},
    }


def test_compare_by_group_counts_pairs_per_group() -> None:
    by_group = compare_by_group(hand_made_results(), "sft", "rl-only", GROUPS_OF)
    assert list(by_group) == [SEEN_WITH_SOLUTIONS, TESTS_ONLY]
    tests_only, seen = by_group[TESTS_ONLY], by_group[SEEN_WITH_SOLUTIONS]
    assert (tests_only.pairs, tests_only.a_passed, tests_only.b_passed) == (6, 1, 4)
    assert (tests_only.wins, tests_only.losses) == (3, 0)
    assert (seen.pairs, seen.a_passed, seen.b_passed, seen.wins, seen.losses) == (4, 2, 1, 0, 1)
    control = compare_by_group(hand_made_results(), "ce", "rl-only", GROUPS_OF)
    assert (control[TESTS_ONLY].wins, control[TESTS_ONLY].losses) == (3, 0)
    assert (control[SEEN_WITH_SOLUTIONS].wins, control[SEEN_WITH_SOLUTIONS].losses) == (0, 3)


def test_report_groups_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = report_groups(hand_made_results(), [("sft", "rl-only"), ("ce", "rl-only")], GROUPS_OF)
    assert [(r["a"], r["group"]) for r in rows] == [
        ("sft", SEEN_WITH_SOLUTIONS), ("sft", TESTS_ONLY), ("ce", SEEN_WITH_SOLUTIONS), ("ce", TESTS_ONLY),
    ]  # fmt: skip
    assert rows[3]["p_value"] == sign_test_p(3, 0) == 0.25
    assert "rl-only vs ce" in capsys.readouterr().out
    assert group_names({"x": "other", **GROUPS_OF}.values()) == [*GROUPS, "other"]


def test_suite_groups_read_the_run_config(tmp_path: Path) -> None:
    suite = SuiteConfig(train_size=60, held_out_size=20, tests_only_primitives=3)
    config = TrainConfig(problems=ProblemsConfig(suite=suite))
    (tmp_path / "config.yaml").write_text(dump_config(config) + "\n")
    expected = {p.task_id: p.metadata["group"] for p in build_suite(suite).held_out}
    assert suite_groups(tmp_path) == expected and set(expected.values()) == set(GROUPS)
    plain = TrainConfig(problems=ProblemsConfig(suite=SuiteConfig(train_size=60, held_out_size=20)))
    (tmp_path / "config.yaml").write_text(dump_config(plain) + "\n")
    assert suite_groups(tmp_path) == {}


def test_training_selects_the_variant_through_an_override() -> None:
    config = load_config(TrainConfig, None, [f"problems.suite.tests_only_primitives={STRENGTH}"])
    assert config.problems.suite == SuiteConfig(tests_only_primitives=STRENGTH)
