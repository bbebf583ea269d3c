"""coderl sft -> coderl sample -> coderl execute on one machine, with a tiny model.

The SFT'd policy must beat the untrained one on the problems it trained on: a small model can
memorise the four toy programs, and the sandbox, not the test, decides what passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coderl.cli import main

from .conftest import add_k_problem

pytestmark = [pytest.mark.slow]


def _problems_file(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(add_k_problem(k).model_dump_json() + "\n" for k in range(4)))
    return path


def _pass_rate(results: Path) -> float:
    records = [json.loads(line) for line in results.read_text().splitlines()]
    return sum(r["verdict"] == "PASSED" for r in records) / len(records)


def test_sft_writes_a_loadable_checkpoint_and_the_loss_falls(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    problems = _problems_file(tmp_path)
    out = tmp_path / "sft"
    args = ["sft", "--problems", str(problems), "--model", "tiny", "--out", str(out)]
    assert main([*args, "--steps", "60", "--batch-size", "4", "--lr", "3e-3"]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "sft_log.jsonl").read_text().splitlines()]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert {"config.json", "model.safetensors", "coderl_policy.json", "sft_config.yaml"} <= {
        p.name for p in out.iterdir()
    }
    assert "loss" in capsys.readouterr().out
    # A second run into the same directory is refused rather than mixing checkpoints.
    assert main([*args, "--steps", "1"]) == 2


def test_sft_without_solutions_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(add_k_problem(1).model_copy(update={"solutions": []}).model_dump_json() + "\n")
    assert main(["sft", "--problems", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "no problem has a ground-truth solution" in capsys.readouterr().err


def test_sample_from_a_missing_checkpoint_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["sample", "--model", str(tmp_path / "none"), "--problems", str(_problems_file(tmp_path))]
    assert main([*args, "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.docker
def test_sft_sample_execute_beats_the_untrained_model(tmp_path: Path) -> None:
    problems = _problems_file(tmp_path)
    checkpoint = tmp_path / "sft"
    sft = ["sft", "--problems", str(problems), "--model", "tiny", "--out", str(checkpoint)]
    assert main([*sft, "--steps", "250", "--batch-size", "4", "--lr", "3e-3"]) == 0

    rates = {}
    for name, model in (("untrained", "tiny"), ("sft", str(checkpoint))):
        samples, results = tmp_path / f"{name}.samples.jsonl", tmp_path / f"{name}.results.jsonl"
        sample = ["sample", "--model", model, "--problems", str(problems), "--n", "4", "--out", str(samples)]
        assert main([*sample, "--temperature", "0.2", "--max-new-tokens", "64"]) == 0
        lines = [json.loads(line) for line in samples.read_text().splitlines()]
        assert len(lines) == 16 and {"task_id", "program", "sample_id", "policy_version"} <= set(lines[0])
        execute = ["execute", "--problems", str(problems), "--samples", str(samples), "--out", str(results)]
        assert main([*execute, "--workers", "2", "--timeout", "2"]) == 0
        rates[name] = _pass_rate(results)
    assert rates["untrained"] == 0.0
    assert rates["sft"] >= 0.75, rates
