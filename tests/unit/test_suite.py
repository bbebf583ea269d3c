"""The generated program-synthesis suite (coderl/suite): determinism, split properties, canonical
solutions passing their own tests, statements, APPS and JSONL round trips and ``coderl suite``."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from pydantic import ValidationError

from coderl.cli import main
from problems import Problem, TestCase, load_problems
from problems import TestKind as Kind  # aliased, or pytest tries to collect it
from problems.suite import (
    FN_NAME,
    Op,
    Pipeline,
    Suite,
    SuiteCapacityError,
    SuiteConfig,
    build_suite,
    canonical_program,
    count_problems,
    export_apps,
    export_jsonl,
    load_suite,
)
from problems.suite.export import apps_files
from problems.suite.render import program

SMALL = {"train_size": 60, "held_out_size": 20}


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite(SuiteConfig())


def pipeline_of(problem: Problem) -> Pipeline:
    return Pipeline.from_specs(problem.metadata["pipeline"])


def dumps(problems: list[Problem]) -> list[dict[str, Any]]:
    return [p.model_dump() for p in problems]


# -- a trusted, in-process runner (generated code only; the sandboxed executor is elsewhere) ----------


def passes(problem: Problem, source: str, test: TestCase) -> bool:
    """Run trusted ``source`` on one test: exec with redirected stdin/stdout, or call ``fn_name``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    code = compile(source, problem.task_id, "exec")
    if test.kind == Kind.STDIO:
        out = io.StringIO()
        with mock.patch.object(sys, "stdin", io.StringIO(test.stdin)), contextlib.redirect_stdout(out):
            exec(code, namespace)
        return out.getvalue() == test.stdout
    assert test.kind == Kind.CALL
    exec(code, namespace)
    result = namespace[problem.fn_name](*copy.deepcopy(test.args))
    return type(result) is type(test.expected) and result == test.expected


def passes_all(problem: Problem, source: str, which: str = "all") -> bool:
    return all(passes(problem, source, test) for test in problem.tests(which))


# -- determinism and configuration ---------------------------------------------------------------------


def test_same_seed_same_suite_other_seed_other_suite() -> None:
    first, again, other = build_suite(**SMALL), build_suite(**SMALL), build_suite(seed=1, **SMALL)
    assert dumps(first.train) == dumps(again.train) and dumps(first.held_out) == dumps(again.held_out)
    assert [p.statement for p in first.train] != [p.statement for p in other.train]
    assert [p.statement for p in first.held_out] != [p.statement for p in other.held_out]
    assert [p.task_id for p in first.train] == [p.task_id for p in other.train]  # ids: split + index


def test_build_suite_fields_override_a_config_and_load_suite_matches() -> None:
    config = SuiteConfig(seed=3, **SMALL)
    assert build_suite(config, seed=4).config == SuiteConfig(seed=4, **SMALL)
    assert build_suite(config).config is config
    assert dumps(load_suite({"seed": 3, **SMALL}).train) == dumps(build_suite(config).train)


def test_config_is_strict_frozen_and_documented() -> None:
    config = SuiteConfig()
    with pytest.raises(ValidationError):
        SuiteConfig(train_sizes=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        config.seed = 2  # type: ignore[misc]
    for bad in ({"train_size": 0}, {"sft_fraction": 1.5}, {"styles": ()}, {"levels": ("easy", "easy")}):
        with pytest.raises(ValidationError):
            SuiteConfig(**bad)
    with pytest.raises(ValidationError):
        SuiteConfig(styles=("stdin",))  # type: ignore[arg-type]
    assert all(field.description for field in SuiteConfig.model_fields.values())


@pytest.mark.parametrize(("split", "size"), [("train", 400), ("sft", 200), ("rl", 200), ("held_out", 300)])
def test_default_counts(suite: Suite, split: str, size: int) -> None:
    counts = count_problems(suite.split(split))  # type: ignore[arg-type]
    levels = {"easy": size // 5, "medium": 2 * size // 5, "hard": 2 * size // 5}
    assert counts.items() >= {"total": size, **levels, "stdio": size // 2, "call": size // 2}.items()
    assert counts["int"] + counts["list"] == size and counts["list"] > 0


def test_a_level_that_runs_out_of_problems_says_so() -> None:
    with pytest.raises(SuiteCapacityError, match="too few pipelines"):
        build_suite(levels=("easy",), list_fraction=0.0, train_size=200, held_out_size=0)


# -- splits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SuiteConfig(), SuiteConfig(seed=7, train_size=12, held_out_size=10)])
def test_held_out_problems_are_unseen_combinations_of_seen_primitives(config: SuiteConfig) -> None:
    suite = build_suite(config)
    train_pipelines = {tuple(p.metadata["pipeline"]) for p in suite.train}
    sft_primitives = {spec for p in suite.sft for spec in p.metadata["pipeline"]}
    for problem in suite.held_out:
        specs = problem.metadata["pipeline"]
        assert tuple(specs) not in train_pipelines, problem.task_id  # in any style
        assert set(specs) <= sft_primitives, problem.task_id  # sft is part of train


def test_splits_partition_and_ids(suite: Suite) -> None:
    ids = [p.task_id for p in suite.split("all")]
    assert len(ids) == len(set(ids)) == 700
    assert {p.task_id for p in suite.sft} | {p.task_id for p in suite.rl} == {p.task_id for p in suite.train}
    assert not {p.task_id for p in suite.sft} & {p.task_id for p in suite.rl}
    assert [p.task_id for p in suite.train] == [f"suite-train-{i:05d}" for i in range(400)]
    assert [p.task_id for p in suite.held_out] == [f"suite-held_out-{i:05d}" for i in range(300)]
    pairs = [(tuple(p.metadata["pipeline"]), p.metadata["style"]) for p in suite.split("all")]
    assert len(pairs) == len(set(pairs))  # no problem twice
    for part in (suite.sft, suite.rl, suite.held_out):
        assert {p.difficulty for p in part} == {"easy", "medium", "hard"}
        assert {p.metadata["style"] for p in part} == {"stdio", "call"}
        assert {p.metadata["input"] for p in part} == {"int", "list"}
    with pytest.raises(ValueError, match="unknown split"):
        suite.split("test")  # type: ignore[arg-type]


def test_rl_solutions_are_withheld_unless_asked(suite: Suite) -> None:
    assert all(p.solutions == [] for p in suite.rl)
    assert all(p.solutions == [canonical_program(p)] for p in suite.sft + suite.held_out)
    shown = build_suite(withhold_rl_solutions=False, **SMALL)
    assert all(p.solutions == [canonical_program(p)] for p in shown.rl)


def test_problem_shape(suite: Suite) -> None:
    for p in suite.split("all"):
        assert p.source == "suite" and p.difficulty == pipeline_of(p).level
        assert (len(p.example_tests), len(p.hidden_tests)) == (2, 5)
        call = p.metadata["style"] == "call"
        assert p.fn_name == (FN_NAME if call else None)
        assert p.starter_code == (f"def f({'n' if p.metadata['input'] == 'int' else 'a'}):\n" if call else "")
        assert {t.kind for t in p.tests("all")} == {Kind.CALL if call else Kind.STDIO}
        assert 25 <= len(canonical_program(p)) <= 100
    stdins = [t.stdin for p in suite.train if p.metadata["input"] == "int" for t in p.tests("all") if t.stdin]
    assert "0\n" in stdins and any(s.startswith("-") for s in stdins)


# -- statements and programs ----------------------------------------------------------------------------


def test_statement_names_every_operation_and_constant(suite: Suite) -> None:
    for p in suite.split("all"):
        text = p.statement.lower()
        for op in pipeline_of(p).steps:
            assert op.phrase().lower() in text, (p.task_id, op)
            if op.k is not None:
                assert f" {op.k}" in p.statement, (p.task_id, op)


def test_sample_statements_and_programs() -> None:
    pipeline = Pipeline.from_specs(["add 3", "mul 2"])
    stdio = SuiteConfig().styles[0]
    assert program(pipeline, stdio) == "n = int(input())\nn = n + 3\nn = n * 2\nprint(n)\n"
    assert program(pipeline, "call") == "def f(n):\n    n = n + 3\n    n = n * 2\n    return n\n"
    listed = Pipeline.from_specs(["sum", "mod 4"])
    assert (
        program(listed, "stdio") == "a = list(map(int, input().split()))\nn = sum(a)\nn = n % 4\nprint(n)\n"
    )
    assert listed.evaluate([-3, 2]) == 3 and Pipeline.from_specs(["div 2"]).evaluate(-3) == -2


def test_canonical_solutions_pass_their_own_tests(suite: Suite) -> None:
    failing = [p.task_id for p in suite.split("all") if not passes_all(p, canonical_program(p))]
    assert failing == []


def test_hidden_tests_reject_every_shorter_pipeline(suite: Suite) -> None:
    for p in suite.split("all")[::5]:
        for shorter in pipeline_of(p).shorter():
            wrong = program(shorter, p.metadata["style"])
            assert not passes_all(p, wrong, "hidden"), (p.task_id, shorter.specs)


def test_ops_and_pipelines_validate() -> None:
    assert Op.parse("add 3") == Op("add", 3) and Op.parse("square").spec == "square"
    for bad in ("add", "add 0", "square 2", "cube", "mod x"):
        with pytest.raises(ValueError):
            Op.parse(bad)
    with pytest.raises(ValueError, match="reducer"):
        Pipeline.from_specs(["add 1", "sum"])
    for pointless in (
        ["mul 2", "div 2"],
        ["neg", "abs"],
        ["square", "abs"],
        ["add 2", "sub 1"],
        ["mod 2", "min -1"],
    ):
        assert not Pipeline.from_specs(pointless).meaningful(), pointless
    assert Pipeline.from_specs(["abs", "neg"]).meaningful()
    with pytest.raises(ValueError, match="not a suite problem"):
        canonical_program(Problem(task_id="x", statement="s"))


# -- exports --------------------------------------------------------------------------------------------


def sample_problems(suite: Suite) -> list[Problem]:
    """Both styles, both input kinds, SFT, RL and held-out problems."""
    return suite.train[:30] + suite.held_out[:10]


def test_apps_export_round_trips_through_load_problems(suite: Suite, tmp_path: Path) -> None:
    problems = sample_problems(suite)
    folders = export_apps(problems, tmp_path / "apps")
    assert {f.name for f in folders} == {p.task_id for p in problems}
    files = {path.name for path in folders[0].iterdir()}
    assert {"question.txt", "input_output.json", "example_input_output.json", "solutions.json"} <= files
    loaded = load_problems(tmp_path / "apps")
    assert [p.task_id for p in loaded] == sorted(p.task_id for p in problems)
    by_id = {p.task_id: p for p in problems}
    for got in loaded:
        want = by_id[got.task_id]
        assert got.model_dump(exclude={"source"}) == want.model_dump(exclude={"source"})


def test_apps_files_of_a_call_problem(suite: Suite) -> None:
    problem = next(p for p in suite.sft if p.fn_name)
    files = apps_files(problem)
    io_json = json.loads(files["input_output.json"])
    assert io_json["fn_name"] == FN_NAME and io_json["inputs"] == [t.args for t in problem.hidden_tests]
    assert files["starter_code.py"] == problem.starter_code
    assert json.loads(files["metadata.json"])["difficulty"] == problem.difficulty


def test_apps_export_refuses_what_apps_cannot_hold(tmp_path: Path) -> None:
    asserting = Problem(task_id="a", statement="s", hidden_tests=[TestCase(kind="assert", code="pass")])
    with pytest.raises(ValueError, match="assert tests"):
        export_apps([asserting], tmp_path)
    with pytest.raises(ValueError, match="folder name"):
        export_apps([Problem(task_id="../x", statement="s")], tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        export_apps([Problem(task_id="x", statement="s")] * 2, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_jsonl_export_round_trips(suite: Suite, tmp_path: Path) -> None:
    problems = suite.split("all")
    export_jsonl(problems, tmp_path / "all.jsonl")
    assert dumps(load_problems(tmp_path / "all.jsonl")) == dumps(problems)


# -- coderl suite ---------------------------------------------------------------------------------------


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["suite", *argv, "--log-level", "WARNING"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_every_split_as_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        "--out", str(tmp_path), "--train-size", "40", "--held-out-size", "10", capsys=capsys
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "held_out.jsonl", "rl.jsonl", "sft.jsonl", "suite_config.yaml", "train.jsonl",
    ]  # fmt: skip
    expected = build_suite(train_size=40, held_out_size=10)
    for split in ("train", "sft", "rl", "held_out"):
        assert dumps(load_problems(tmp_path / f"{split}.jsonl")) == dumps(expected.split(split))  # type: ignore[arg-type]
    assert "train" in out and " 40 " in out and "held_out" in out and "stdio" in out


def test_cli_adds_an_apps_split_of_the_same_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--out", str(tmp_path), "--seed", "2", "--set", "train_size=20", "held_out_size=6")
    assert run_cli(*args, "--split", "sft", capsys=capsys)[0] == 0
    code, out, _ = run_cli(*args, "--split", "held_out", "--format", "apps", capsys=capsys)
    assert code == 0 and "held_out" in out
    held = load_problems(tmp_path / "held_out")
    assert [p.task_id for p in held] == [f"suite-held_out-{i:05d}" for i in range(6)]
    assert (tmp_path / "sft.jsonl").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["--split", "test"],
        ["--format", "csv"],
        ["--seed", "one"],
        ["--set", "train_size=0"],
        ["--set", "no_such_key=1"],
        ["--train-size", "3000", "--held-out-size", "1000", "--set", 'levels=["easy"]'],
    ],
)
def test_cli_bad_arguments_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli("--out", str(tmp_path / "out"), *argv, capsys=capsys)
    assert code == 2 and err
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_cli_refuses_to_overwrite_or_mix_suites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ("--train-size", "10", "--held-out-size", "4")
    assert run_cli("--out", str(tmp_path), "--split", "rl", *small, capsys=capsys)[0] == 0
    code, _, err = run_cli("--out", str(tmp_path), "--split", "rl", *small, capsys=capsys)
    assert code == 2 and "already there" in err
    code, _, err = run_cli("--out", str(tmp_path), "--split", "sft", "--seed", "5", *small, capsys=capsys)
    assert code == 2 and "different suite configuration" in err
    file = tmp_path / "file"
    file.write_text("")
    assert run_cli("--out", str(file), *small, capsys=capsys)[0] == 2


# -- the real executor --------------------------------------------------------------------------------


def executor_problems(suite: Suite, count: int) -> Iterator[tuple[Problem, str]]:
    """The canonical program and a one-operation-short program of ``count`` problems of each split."""
    for p in suite.train[:count] + suite.held_out[:count]:
        yield p, canonical_program(p)
        shorter = pipeline_of(p).shorter()[-1]  # one operation fewer
        yield p, program(shorter, p.metadata["style"])


def check_with_executor(suite: Suite, backend: str, count: int) -> None:
    from coderl.outcomes import Verdict
    from executor import ExecutionItem, Executor, ExecutorConfig, LimitsConfig, SandboxConfig

    pairs = list(executor_problems(suite, count))
    config = ExecutorConfig(
        workers=2, sandbox=SandboxConfig(backend=backend), limits=LimitsConfig(timeout_s=2.0, memory_mb=512)
    )
    with Executor(config) as ex:
        results = ex.execute_many([ExecutionItem(p, source, "all") for p, source in pairs])
    verdicts = [r.verdict for r in results]
    assert verdicts[0::2] == [Verdict.PASSED] * len(pairs[0::2])  # canonical programs
    assert all(v == Verdict.FAILED_TEST for v in verdicts[1::2])  # one operation short


def test_canonical_solutions_pass_in_the_process_executor(suite: Suite) -> None:
    check_with_executor(suite, "process", 4)


@pytest.mark.docker
def test_canonical_solutions_pass_in_the_docker_sandbox(suite: Suite) -> None:
    docker = pytest.importorskip("docker")
    try:
        docker.from_env(timeout=30).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine is a skip
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc})")
    check_with_executor(suite, "docker", 2)


def test_the_suite_does_not_depend_on_the_hash_seed() -> None:
    script = (
        "import hashlib, json; from problems.suite import build_suite; "
        "s = build_suite(seed=7, train_size=30, held_out_size=10); "
        "print(hashlib.sha256(json.dumps([p.model_dump() for p in s.split('all')]).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
