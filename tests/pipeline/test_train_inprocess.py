"""The whole training run in one process: every role, real Redis and Docker sandboxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from driver.metrics import read_metrics
from driver.train import EVALUATIONS_FILE, RunError, train
from learner.checkpoint import latest_checkpoint
from learner.learner import Learner

from .conftest import audit_records, small_config

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker]


def test_a_small_run_goes_through_every_phase(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = small_config(run_dir, "use_ray=false", "mode=sync")
    result = train(config)

    # Phases and versions: 30 SFT steps, then 4 RL updates; critic updates leave the policy alone.
    assert result.state.phase == "done"
    assert result.state.policy_version == 30 + 4
    assert [e["when"] for e in result.state.evaluations] == ["before", "after sft", "after rl"]
    assert all(0.0 <= e["pass@1"] <= 1.0 and e["problems"] == 6 for e in result.state.evaluations)
    # evaluations.jsonl keeps each held-out problem's verdict, consistent with the pass count.
    logged = [json.loads(line) for line in (run_dir / EVALUATIONS_FILE).read_text().splitlines()]
    assert [e["when"] for e in logged] == ["before", "after sft", "after rl"]
    for record in logged:
        assert len(record["verdicts"]) == 6
        assert record["passed"] == sum(v == "PASSED" for v in record["verdicts"].values())

    # Every update trained on whole groups of distinct samples, each at most once, none too stale.
    records = audit_records(run_dir)
    assert len(records) == 2 + 4
    trained = [sample for record in records for sample in record["trained"]]
    assert len(trained) == len(set(trained)) >= 6 * 8
    for record in records:
        versions = {int(s.split("/v")[-1].split("s")[0]) for s in record["trained"]}
        assert max(versions) <= record["policy_version"]
        assert record["policy_version"] - min(versions) <= config.learner.max_policy_lag
        assert len(record["greedy"]) == len(record["trained"]) // 4  # one greedy decode per group

    # Metrics, TensorBoard events and learning curves.
    metrics = read_metrics(run_dir / "metrics.jsonl")
    rl_rows = [m for m in metrics if "loss/rl" in m]
    assert len(rl_rows) == 4 and all("loss/critic" in m and "exec/pass_rate" in m for m in rl_rows)
    assert any("eval/held_out_pass@1" in m for m in metrics)
    # The monitoring the dashboard shows: throughput, queue depths, idle fractions per role.
    for key in (
        "throughput/samples_per_s", "throughput/executions_per_s", "queue/requests_waiting",
        "queue/requests_running", "queue/results_unread", "queue/executor_workers",
        "idle/sampler", "idle/learner", "idle/executor", "sync/weight_broadcast_s",
    ):  # fmt: skip
        assert all(key in m for m in rl_rows), key
    # Synchronous: every published program (greedy decodes included) is executed and read before the
    # next round, so the two rates agree.
    for m in rl_rows:
        assert m["throughput/executions_per_s"] == pytest.approx(m["throughput/samples_per_s"], rel=0.05)
    assert all(m["queue/executor_workers"] >= 1 for m in rl_rows)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "curves" / "loss.png").is_file()

    # The final checkpoint loads with plain transformers and knows its version.
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    AutoModelForSeq2SeqLM.from_pretrained(checkpoint / "policy")
    assert json.loads((checkpoint / "policy" / "coderl_policy.json").read_text())["policy_version"] == 34
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["phase"] == "done" and len(state["samplers"]) == 1
    assert state["samplers"][0]["versions_received"][-1] == 34
    assert state["phase_steps"] == {"sft": 30, "critic": 2, "rl": 4}
    # The end of each phase is kept as a milestone besides the newest rolling checkpoints.
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["after-critic", "after-rl", "after-sft", "step-000034", "step-000036"]
    after_sft = json.loads((run_dir / "checkpoints" / "after-sft" / "state.json").read_text())
    assert after_sft["phase_steps"] == {"sft": 30} and after_sft["policy_version"] == 30
    # The SFT loss of every logged step, and each phase's start marked for the curves.
    assert [m["step"] for m in metrics if "loss/sft" in m] == [30]  # log_every 50 > 30: the last step
    assert [(m["step"], m["run/phase"]) for m in metrics if "run/phase" in m] == [(0, 0), (30, 1), (32, 2)]
    assert all(
        sum(v for k, v in m.items() if k.startswith("exec/verdict/")) == pytest.approx(1.0) for m in rl_rows
    )

    # A finished run given more RL steps trains them (and only them) when resumed.
    more = train(small_config(run_dir, "use_ray=false", "mode=sync", "phases.rl_steps=6"), resume=True)
    assert more.state.phase_steps == {"sft": 30, "critic": 2, "rl": 6}
    assert more.state.policy_version == 36
    assert [e["when"] for e in more.state.evaluations][-1] == "after rl"
    assert len(audit_records(run_dir)) == 2 + 4 + 2


def test_a_second_run_into_the_same_directory_needs_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"run_id": "x"}')
    with pytest.raises(RunError, match="--resume"):
        train(small_config(run_dir, "use_ray=false", "mode=sync"))


def test_start_up_failures_leave_no_run_directory_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    missing = small_config(run_dir, "use_ray=false", "problems.source=files", "problems.sft_path=/nope.jsonl")
    with pytest.raises(RunError, match="problems") as failed:
        train(missing)
    assert failed.value.exit_code == 2 and not run_dir.exists()
    with pytest.raises(RunError, match="neither a preset") as failed:
        train(small_config(run_dir, "use_ray=false", "policy.model=tnyy"))
    assert failed.value.exit_code == 2 and not run_dir.exists()
    with pytest.raises(RunError, match="holds no run to resume"):
        train(small_config(run_dir, "use_ray=false"), resume=True)
    assert not run_dir.exists()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RunError, match="Docker engine") as failed:
        train(small_config(run_dir, "use_ray=false"))
    assert failed.value.exit_code == 3 and not run_dir.exists()


def test_a_warm_start_killed_inside_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SFT checkpoints every sft_checkpoint_every steps with its optimizer, schedule and data
    order: a warm start killed after its second checkpoint resumes there and ends with the
    weights of one that was never killed."""
    warm_only = [
        "use_ray=false", "mode=sync", "phases.sft_steps=6", "sft_checkpoint_every=2",
        "phases.critic_steps=0", "phases.rl_steps=0", "sft.optimizer.schedule=linear",
        "problems.suite.held_out_size=2",
    ]  # fmt: skip
    whole = train(small_config(tmp_path / "whole", *warm_only))
    assert whole.state.phase_steps == {"sft": 6}

    calls = {"n": 0}
    original = Learner.sft

    def killed_on_the_third_stretch(self: Learner, steps: int, total_steps: int | None = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed inside the warm start")
        return original(self, steps, total_steps)

    run_dir = tmp_path / "killed"
    monkeypatch.setattr(Learner, "sft", killed_on_the_third_stretch)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(run_dir, *warm_only))
    monkeypatch.setattr(Learner, "sft", original)
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    assert state["phase"] == "sft" and state["phase_steps"] == {"sft": 4}

    resumed = train(small_config(run_dir, *warm_only), resume=True)
    assert resumed.state.phase_steps == {"sft": 6} and resumed.state.policy_version == 6
    sft_losses = [m["loss/sft"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss/sft" in m]
    assert sft_losses  # the resumed stretch logged its losses too
    ours = AutoModelForSeq2SeqLM.from_pretrained(run_dir / "checkpoints" / "after-sft" / "policy")
    theirs = AutoModelForSeq2SeqLM.from_pretrained(
        tmp_path / "whole" / "checkpoints" / "after-sft" / "policy"
    )
    for (name, mine), (_, other) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        torch.testing.assert_close(mine, other, rtol=0, atol=1e-6, msg=name)
