"""Rolling checkpoints are pruned to the newest few; phase milestones are kept besides them."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from learner.checkpoint import keep_milestone, latest_checkpoint, write_checkpoint_dir


def _fill(directory: Path) -> None:
    (directory / "weights.bin").write_bytes(b"w" * 1000)


def test_pruning_keeps_the_newest_rolling_checkpoints_and_every_milestone(tmp_path: Path) -> None:
    first = write_checkpoint_dir(tmp_path, "step-000010", _complete(10), keep=2)
    milestone = keep_milestone(first, "after-sft")
    for step in (20, 30, 40):
        write_checkpoint_dir(tmp_path, f"step-{step:06d}", _complete(step), keep=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["after-sft", "step-000030", "step-000040"]
    assert (milestone / "weights.bin").read_bytes() == b"w" * 1000  # outlives its rolling step
    assert latest_checkpoint(tmp_path) == root / "step-000040"


def test_a_milestone_is_replaced_whole_and_shares_the_files(tmp_path: Path) -> None:
    step = write_checkpoint_dir(tmp_path, "step-000010", _fill)
    keep_milestone(step, "after-rl")
    (step / "extra.txt").write_text("later")
    again = keep_milestone(step, "after-rl")
    assert sorted(p.name for p in again.iterdir()) == ["extra.txt", "weights.bin"]
    assert (again / "weights.bin").stat().st_ino == (step / "weights.bin").stat().st_ino  # a hard link


def _complete(step: int) -> Callable[[Path], None]:
    def fill(directory: Path) -> None:
        _fill(directory)
        (directory / "state.json").write_text(json.dumps({"counters": {"global_step": step}}))

    return fill


def test_a_failed_rewrite_leaves_the_complete_checkpoint_of_that_name(tmp_path: Path) -> None:
    """The end of a run writes the same step again: the complete one stays until replaced."""
    write_checkpoint_dir(tmp_path, "step-000020", _complete(20))

    def crash(directory: Path) -> None:
        (directory / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint_dir(tmp_path, "step-000020", crash)
    found = latest_checkpoint(tmp_path)
    assert found == tmp_path / "checkpoints" / "step-000020"
    assert not list(found.parent.glob(".*.tmp"))  # the half-written folder is removed
    assert (found / "weights.bin").read_bytes() == b"w" * 1000


def test_a_dangling_latest_falls_back_to_the_newest_complete_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "checkpoints"
    write_checkpoint_dir(tmp_path, "step-000010", _complete(10))
    write_checkpoint_dir(tmp_path, "step-000020", _complete(20))
    # A crash inside the replacement of step 20: set aside, the new one not yet renamed in.
    (root / "step-000020").rename(root / ".step-000020.old")
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path) == root / "step-000020"  # set back in place
    assert "missing or incomplete" in caplog.text
    # LATEST names a folder that is gone altogether: the newest complete one left.
    shutil.rmtree(root / "step-000020")
    assert latest_checkpoint(tmp_path) == root / "step-000010"
    (root / "step-000010" / "state.json").unlink()  # incomplete: none left
    assert latest_checkpoint(tmp_path) is None
