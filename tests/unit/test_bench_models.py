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


def test_static_decode_bench_runs_every_cell(tmp_path: Path) -> None:
    """python -m bench.models.static_decode: a cell per (model, batch, new tokens), both decoders
    doing the same work (the bench refuses otherwise), ratios from the rates it reports."""
    out = tmp_path / "static.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench.models.static_decode", "--models", "tiny", "tiny-causal",
            "--batch", "2", "3", "--new-tokens", "4", "--prompt-tokens", "6", "--queue", "2",
            "--repeats", "1", "--threads", "1", "--json", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cells = json.loads(out.read_text())["cells"]
    assert [(c["model"], c["batch"]) for c in cells] == [
        ("tiny", 2),
        ("tiny", 3),
        ("tiny-causal", 2),
        ("tiny-causal", 3),
    ]
    for cell in cells:
        assert cell["fixed_tokens"] == cell["batch"] * 4
        assert cell["batch"] * 2 <= cell["ragged_tokens"] <= cell["batch"] * 2 * 4
        assert cell["fixed_ratio"] == pytest.approx(cell["fixed_static_tps"] / cell["fixed_dynamic_tps"])
        assert cell["fixed_static_gpu_busy"] is None  # CPU: no GPU share to report
    assert run.stdout.count(" x") == 2 * len(cells)
