"""python -m bench.models: its smallest configuration runs end to end and writes consistent numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


SMALLEST = [
    "--device", "cpu", "--threads", "1", "--batch", "3", "--prompt-tokens", "5", "--new-tokens", "4",
    "--train-batch", "2", "--response-tokens", "6", "--warmup", "0", "--repeats", "2",
]  # fmt: skip


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    # bench/ is no installed package: run it the documented way, from the repository root.
    return subprocess.run(
        [sys.executable, "-m", "bench.models", *SMALLEST, *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_smallest_configuration_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    run = _bench("--models", "tiny", "tiny-causal", "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "batched/sequential >= 4x" in run.stdout
    assert "1 torch threads" in run.stdout

    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["dtype"] == "float32"
    assert data["torch_threads"] == 1
    assert data["target_ratio"] == 4.0
    assert [m["name"] for m in data["models"]] == ["tiny", "tiny-causal"]
    for model in data["models"]:
        assert model["parameters"] > 0
        sampling = model["sampling"]
        # No EOS stop: every row decodes exactly --new-tokens tokens, in both modes.
        assert sampling["batched_tokens"] == sampling["sequential_tokens"] == 3 * 4
        assert sampling["ratio"] == pytest.approx(
            sampling["batched_tokens_per_s"] / sampling["sequential_tokens_per_s"]
        )
        assert sampling["passed"] == (sampling["ratio"] >= 4.0)
        assert [step["loss"] for step in model["steps"]] == ["cross_entropy", "policy_gradient"]
        for step in model["steps"]:
            assert len(step["seconds"]) == 2
            assert step["median_ms"] > 0
            assert step["response_tokens_per_s"] == pytest.approx(2 * 6 / (step["median_ms"] / 1000))


def test_bfloat16_weights_are_benchmarked_in_bfloat16(tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    run = _bench("--models", "tiny", "--dtype", "bfloat16", "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "bfloat16, 1 torch threads" in run.stdout
    data = json.loads(out.read_text())
    assert data["dtype"] == "bfloat16"
    assert all(step["median_ms"] > 0 for step in data["models"][0]["steps"])
