"""Checkpoints of a training run: everything needed to continue a killed run.

Layout of ``run_dir/checkpoints/step-{N:06d}/``::

  policy/            Hugging Face checkpoint (from_pretrained loads it; coderl_policy.json: version)
  critic/            critic backbone + head (Critic.load reads it)
  optimizers.pt      actor and critic AdamW states
  rng.pt             torch and Python RNG states
  state.json         phase, step counters, sampler data cursors, counters

A checkpoint is written to a temporary directory, fsynced and renamed into place, then ``LATEST``
is replaced atomically; a checkpoint of the same name is removed only after its replacement is in
place, so a kill at any moment leaves a complete checkpoint to resume from.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RunState",
    "keep_milestone",
    "latest_checkpoint",
    "load_rng",
    "run_dir_failure",
    "save_rng",
    "write_checkpoint_dir",
]

log = logging.getLogger(__name__)

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


COMPLETE = "state.json"
"""written last into a checkpoint: a directory holding it is complete"""


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``LATEST`` names or, when that one is missing or incomplete (a crash while
    it was being replaced), the newest complete one, with a warning; None when there is none."""
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    named = root / pointer.read_text().strip()
    if (named / COMPLETE).is_file():
        return named
    found = _newest_complete(root)
    log.warning(
        "checkpoint %s named by %s is missing or incomplete; using the newest complete one: %s",
        named.name,
        LATEST,
        found.name if found is not None else "none (the run starts over)",
    )
    return found


def _newest_complete(root: Path) -> Path | None:
    """The complete checkpoint of the highest step: rolling ones, milestones, and one set aside
    while its replacement was being renamed in (``.step-N.old``, renamed back)."""
    best: tuple[float, str, Path] | None = None
    for path in root.iterdir():
        if not path.is_dir() or not (path / COMPLETE).is_file() or path.name.endswith(".tmp"):
            continue
        step = json.loads((path / COMPLETE).read_text()).get("counters", {}).get("global_step", 0)
        if best is None or (step, path.name) > best[:2]:
            best = (step, path.name, path)
    if best is None:
        return None
    path = best[2]
    if path.name.startswith(".") and path.name.endswith(OLD):
        restored = root / path.name[1 : -len(OLD)]
        if not restored.exists():
            path.rename(restored)
            return restored
    return path


def write_checkpoint_dir(run_dir: Path, name: str, fill: Any, keep: int = 2) -> Path:
    """Create ``checkpoints/name`` via ``fill(tmp_dir)``, point LATEST at it, keep the newest ``keep``
    rolling ones.

    Durable and never without a complete checkpoint: the new one is written and fsynced under a
    temporary name; a complete checkpoint of the same name is set aside, the new one renamed in,
    LATEST replaced atomically, and only then the old one removed (``latest_checkpoint`` finds the
    newest complete one if a crash falls between these steps). Not guaranteed: a disk that loses
    fsynced data.
    """
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_tree(tmp)
    except BaseException as exc:
        full = not isinstance(exc, OSError) and _nearly_full(root)
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: leave no half-written folder behind
        if full:  # torch.save says only "unexpected pos ..." when the disk fills under it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from exc
        raise
    final, old = root / name, root / f".{name}{OLD}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    pointer_tmp = root / f".{LATEST}.tmp"
    try:
        pointer_tmp.write_text(name + "\n")
        _fsync_file(pointer_tmp)
        os.replace(pointer_tmp, root / LATEST)
    except BaseException:
        pointer_tmp.unlink(missing_ok=True)  # LATEST still names a complete one (or the fallback finds it)
        raise
    _fsync_file(root)
    shutil.rmtree(old, ignore_errors=True)
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(ROLLING))
    for stale in steps[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


OLD = ".old"
NEARLY_FULL_BYTES = 1 << 20


def _nearly_full(directory: Path) -> bool:
    """Whether the file system of ``directory`` has (almost) no room left for us."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < NEARLY_FULL_BYTES


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """Every file and directory under ``directory`` reaches the disk."""
    for folder, _, files in os.walk(directory):
        for file in files:
            _fsync_file(Path(folder) / file)
        _fsync_file(Path(folder))


def keep_milestone(checkpoint: Path, name: str) -> Path:
    """Keep ``checkpoint`` also as ``checkpoints/name`` (e.g. ``after-sft``), which pruning never
    removes; files are hard links, so a milestone costs no space while its step is kept."""
    final = checkpoint.parent / name
    tmp = checkpoint.parent / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(checkpoint, tmp, copy_function=os.link)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


RUN_DIR_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}
"""a run directory that is full, read-only, over quota or not ours: the run stops, resumable"""


def run_dir_failure(exc: BaseException, run_dir: Path) -> str | None:
    """One line for a run that could not write its directory (full, read-only, over quota, not
    writable), found anywhere in ``exc``'s causes (a Ray task error carries the learner's): the
    directory, what the error means and how to resume; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in RUN_DIR_ERRNOS and _inside(current, run_dir):
            where = f" ({current.filename})" if current.filename else ""
            try:
                last = latest_checkpoint(run_dir)
            except OSError:
                last = None
            since = f"its last complete checkpoint, {last.name}" if last else "the start (no checkpoint yet)"
            return (
                f"cannot write the run directory {run_dir}: {os.strerror(current.errno)}{where}; make room "
                f"(or make it writable), then the same `coderl train` command with --resume "
                f"continues from {since}"
            )
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def _inside(error: OSError, run_dir: Path) -> bool:
    """Whether the failed path is in the run directory (a path-less error may be: the learner's
    writers do not all say where they failed)."""
    if not error.filename:
        return True
    return Path(os.path.abspath(error.filename)).is_relative_to(os.path.abspath(run_dir))


def save_rng(path: Path) -> None:
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, path)


def load_rng(path: Path) -> None:
    state = torch.load(path, weights_only=False)
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def write_json(path: Path, data: BaseModel) -> None:
    path.write_text(json.dumps(data.model_dump(mode="json"), indent=2) + "\n")
