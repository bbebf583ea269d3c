"""Checkpoints of a training run: everything needed to continue a killed run.

Layout of ``run_dir/checkpoints/step-{N:06d}/``::

  policy/            Hugging Face checkpoint (from_pretrained loads it; coderl_policy.json: version)
  critic/            critic backbone + head (Critic.load reads it)
  optimizers.pt      actor and critic AdamW states
  rng.pt             torch and Python RNG states
  state.json         phase, step counters, sampler data cursors, counters

A checkpoint is written to a temporary directory and renamed into place, then ``LATEST`` is
replaced atomically, so a kill at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RunState", "keep_milestone", "latest_checkpoint", "load_rng", "save_rng", "write_checkpoint_dir"]

LATEST = "LATEST"
ROLLING = "step-"
"""rolling checkpoints are ``step-{N:06d}``; only they are pruned (milestones are kept)"""


class RunState(BaseModel):
    """The non-tensor state of a run."""

    model_config = ConfigDict(extra="forbid")

    phase: str = "sft"
    """the phase in progress (sft, critic, rl), or done"""
    phase_steps: dict[str, int] = Field(default_factory=dict)
    """steps finished in each phase (a resumed run owes each phase the rest of its steps)"""
    policy_version: int = 0
    samplers: list[dict[str, Any]] = Field(default_factory=list)
    """each sampler's SamplerState"""
    counters: dict[str, float] = Field(default_factory=dict)
    evaluations: list[dict[str, Any]] = Field(default_factory=list)
    """held-out pass@1 measured so far (before training, during, after)"""


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = checkpoints_dir(run_dir) / LATEST
    if not pointer.is_file():
        return None
    path = checkpoints_dir(run_dir) / pointer.read_text().strip()
    return path if path.is_dir() else None


def write_checkpoint_dir(run_dir: Path, name: str, fill: Any, keep: int = 2) -> Path:
    """Create ``checkpoints/name`` via ``fill(tmp_dir)``, point LATEST at it, keep the newest ``keep``."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    fill(tmp)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    pointer_tmp = root / f".{LATEST}.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, root / LATEST)
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(ROLLING))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def keep_milestone(checkpoint: Path, name: str) -> Path:
    """Keep ``checkpoint`` also as ``checkpoints/name`` (e.g. ``after-sft``), which pruning never
    removes; files are hard links, so a milestone costs no space while its step is kept."""
    final = checkpoint.parent / name
    tmp = checkpoint.parent / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, copy_function=os.link)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def save_rng(path: Path) -> None:
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, path)


def load_rng(path: Path) -> None:
    state = torch.load(path, weights_only=False)
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def write_json(path: Path, data: BaseModel) -> None:
    path.write_text(json.dumps(data.model_dump(mode="json"), indent=2) + "\n")
