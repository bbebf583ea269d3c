"""python -m bench.learning: a one-seed grid of tiny runs goes end to end, with per-problem verdicts and
paired tests consistent with the runs' own pass@1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.learning import grid as learning

from .conftest import SMALL_RUN

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.redis]


def test_one_seed_grid_reports_arms_and_paired_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid"
    overrides = [s for s in SMALL_RUN if not s.startswith("learner.audit")]
    args = ["--seeds", "0", "--arms", "critic", "ce", "--out", str(out), "--timeout", "600"]
    args += ["--set", *overrides, "use_ray=false", "mode=sync", "phases.sft_steps=10", "phases.rl_steps=2"]
    assert learning.main(args) == 0

    summary = json.loads((out / "learning.json").read_text())
    assert set(summary["pass@1"]) == {"sft", "critic", "ce"}
    for arm, by_seed in summary["pass@1"].items():
        last_phases = learning.SFT_PHASES if arm == "sft" else ("rl",)
        record = learning.final_evaluation(out / f"{arm}-0", last_phases)
        assert record is not None and len(record["verdicts"]) == 6
        assert by_seed["0"] == record["pass@1"] == record["passed"] / 6
    # The arms start from the SFT run's checkpoint: their first evaluation is the SFT policy's.
    sft_final = learning.final_evaluation(out / "sft-0", learning.SFT_PHASES)
    assert sft_final is not None
    first = json.loads((out / "critic-0" / "evaluations.jsonl").read_text().splitlines()[0])
    assert first["when"] == "before" and first["verdicts"] == sft_final["verdicts"]
    compared = {(t["a"], t["b"]) for t in summary["tests"]}
    assert compared == {("sft", "critic"), ("sft", "ce"), ("ce", "critic")}
    for test in summary["tests"]:
        assert test["pairs"] == 6 and test["wins"] + test["losses"] <= 6
        assert test["b_passed"] - test["a_passed"] == test["wins"] - test["losses"]
        assert 0.0 < test["p_value"] <= 1.0

    # --reuse keeps finished runs.
    capsys.readouterr()
    assert learning.main([*args, "--reuse"]) == 0
    assert capsys.readouterr().out.count("reused") == 3
