"""``coderl evaluate`` end to end: a tiny policy, the APPS fixtures, programs judged in Docker
sandboxes; resume, the summary against the records, critical sampling and the repair data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from coderl.cli import main
from coderl.passk import pass_at_k
from critic.config import CriticConfig
from critic.model import Critic
from problems import load_problems

pytestmark = [pytest.mark.docker, pytest.mark.slow]

APPS = Path(__file__).resolve().parents[1] / "fixtures" / "apps" / "train"
BASE = ["evaluate", "--model", "tiny", "--problems", str(APPS), "--max-new-tokens", "24", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        pytest.skip(f"Docker engine unreachable ({type(exc).__name__}: {exc}); start dockerd to run these")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_resumes_and_its_summary_follows_the_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    args = [*BASE, "--n", "3", "--k", "1", "2", "3", "--out", str(out)]
    assert main([*args, "--max-problems", "2"]) == 0
    assert len(_lines(out / "results.jsonl")) == 6
    with (out / "results.jsonl").open("a") as file:  # a run killed while writing a third problem
        file.write('{"task_id": "0002", "sample_id": "0002/v0/s0/sam')
    assert main(args) == 2  # results exist: --resume or another --out
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    results, samples = _lines(out / "results.jsonl"), _lines(out / "samples.jsonl")
    assert [r["sample_id"] for r in results] == [s["sample_id"] for s in samples]
    assert len(results) == 12 and len({r["sample_id"] for r in results}) == 12
    assert {r["task_id"] for r in results} == {"0000", "0001", "0002", "0003"}
    assert all(r["origin"] == "sampled" and r["round"] == 0 for r in results)
    for record in results:  # examples judged where the problem has them
        assert (record["example_verdict"] is None) == (record["task_id"] in {"0000", "0001"})

    summary = json.loads((out / "summary.json").read_text())
    by_task: dict[str, list[bool]] = {}
    for record in results:
        by_task.setdefault(record["task_id"], []).append(record["passed"])
    for k in (1, 2, 3):
        expected = sum(pass_at_k(3, sum(v), k) for v in by_task.values()) / 4
        assert summary["pass@k"]["all"][f"pass@{k}"] == pytest.approx(expected)
    difficulties = {p.difficulty for p in load_problems(APPS)}
    assert set(summary["pass@k"]) == {"all"} | difficulties
    assert set(summary["n@k"]["all"]) == {"1@1", "1@2", "1@3"}
    assert summary["problems"]["all"] == {"count": 4.0}
    table = capsys.readouterr().out
    assert "pass@3" in table and "1@3" in table and "all" in table


def test_critical_sampling_spends_the_same_budget_and_writes_repair_data(tmp_path: Path) -> None:
    critic_dir = Critic.load(CriticConfig(model="tiny", classes="binary", device="cpu")).save(
        tmp_path / "critic"
    )
    out, repair = tmp_path / "cs", tmp_path / "repair.jsonl"
    args = [
        *BASE,
        "--n",
        "4",
        "--k",
        "1",
        "4",
        "--out",
        str(out),
        "--critical-sampling",
        "--critic",
        str(critic_dir),
    ]
    assert main([*args, "--repair-data", str(repair)]) == 0
    results = _lines(out / "results.jsonl")
    assert len(results) == 16  # N per problem in every mode
    origins: dict[str, list[str]] = {}
    for record in results:
        origins.setdefault(record["task_id"], []).append(record["origin"])
    failed_examples = {
        task
        for task in ("0002", "0003")
        if not any(r["example_passed"] for r in results if r["task_id"] == task)
    }
    for task, seen in origins.items():
        if task in failed_examples:  # no program passed the examples: the critic's best one repaired
            assert seen == ["sampled"] * 2 + ["repaired"] * 2
        elif task in {"0000", "0001"}:  # no example tests: plain sampling
            assert seen == ["sampled"] * 4
    assert failed_examples  # the random policy passes no example: both problems were repaired
    by_origin = json.loads((out / "summary.json").read_text())["programs"]["by_origin"]
    assert by_origin == {"sampled": 12, "repaired": 4}
    repairs = load_problems(repair)
    failed = [r for r in results if not r["passed"]]
    assert len(repairs) == len(failed) and all(p.solutions for p in repairs)
    assert all("FAILED PROGRAM:" in p.statement for p in repairs)
    # the repair model trains with the warm start on those problems
    sft = ["sft", "--problems", str(repair), "--model", "tiny", "--out", str(tmp_path / "repairer")]
    assert main([*sft, "--set", "steps=2", "batch_size=4"]) == 0
    assert (tmp_path / "repairer" / "coderl_policy.json").is_file()


def test_critical_sampling_needs_a_critic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--n", "2", "--out", str(tmp_path / "x"), "--critical-sampling"]) == 2
    assert "needs a critic" in capsys.readouterr().err
