"""Part 1 of the pipeline benchmark: the same RL phase from one warm start through
``driver.train.train`` in ``mode="sync"`` and ``mode="decoupled"``, read back from each run's
``metrics.jsonl``."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ModeResult:
    mode: str
    samples_per_s: float
    idle_sampler: float
    idle_learner: float
    idle_executor: float
    policy_lag_mean: float
    rl_wall_s: float
    stale_dropped: float


def _config(run_dir: Path, *overrides: str) -> Any:
    """The embedded defaults with ``overrides``, as ``coderl train --set`` would give them."""
    from coderl.config import load_config
    from driver.train_config import TrainConfig

    return load_config(TrainConfig, None, [f"run_dir={run_dir}", "eval.problems=1", *overrides])


def warm_start(work: Path, sft_steps: int) -> Path:
    from driver.train import train
    from learner.checkpoint import latest_checkpoint

    run_dir = work / "warm"
    train(_config(run_dir, f"phases.sft_steps={sft_steps}", "phases.critic_steps=0", "phases.rl_steps=0"))
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None, f"the warm start left no checkpoint in {run_dir}"
    return checkpoint / "policy"


def run_mode(work: Path, mode: str, policy_dir: Path, rl_steps: int) -> ModeResult:
    from driver.train import train

    run_dir = work / mode
    phases = ["phases.sft_steps=0", "phases.critic_steps=0", f"phases.rl_steps={rl_steps}"]
    train(_config(run_dir, f"mode={mode}", f"policy.model={policy_dir}", *phases))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if "loss/rl" in r]
    if not rl:
        raise RuntimeError(f"{mode}: no RL updates in {run_dir / 'metrics.jsonl'}")
    last = rl[-1]
    return ModeResult(
        mode=mode,
        samples_per_s=last["throughput/samples_per_s"],
        idle_sampler=last["idle/sampler"],
        idle_learner=last["idle/learner"],
        idle_executor=last.get("idle/executor", float("nan")),
        policy_lag_mean=statistics.mean(r["staleness/policy_lag_mean"] for r in rl),
        rl_wall_s=rl[-1]["time"] - rl[0]["time"],
        stale_dropped=last.get("buffer/dropped/stale_samples", 0.0),
    )


def print_modes(results: list[ModeResult]) -> None:
    print(f"\n{'mode':<11}{'samples/s':>10}{'idle sampler':>14}{'idle learner':>14}"
          f"{'idle executor':>15}{'lag':>6}{'stale':>7}{'RL wall s':>11}")  # fmt: skip
    for r in results:
        idle = f"{r.idle_sampler:>14.2f}{r.idle_learner:>14.2f}{r.idle_executor:>15.2f}"
        print(f"{r.mode:<11}{r.samples_per_s:>10.1f}{idle}{r.policy_lag_mean:>6.2f}"
              f"{r.stale_dropped:>7.0f}{r.rl_wall_s:>11.1f}")  # fmt: skip
    by_mode = {r.mode: r for r in results}
    if {"sync", "decoupled"} <= set(by_mode):
        ratio = by_mode["decoupled"].samples_per_s / by_mode["sync"].samples_per_s
        print(f"decoupled / sync samples/s: {ratio:.2f}x")
