"""Rolling checkpoints are pruned to the newest few; phase milestones are kept besides them."""

from __future__ import annotations

from pathlib import Path

from learner.checkpoint import keep_milestone, latest_checkpoint, write_checkpoint_dir


def _fill(directory: Path) -> None:
    (directory / "weights.bin").write_bytes(b"w" * 1000)


def test_pruning_keeps_the_newest_rolling_checkpoints_and_every_milestone(tmp_path: Path) -> None:
    first = write_checkpoint_dir(tmp_path, "step-000010", _fill, keep=2)
    milestone = keep_milestone(first, "after-sft")
    for step in (20, 30, 40):
        write_checkpoint_dir(tmp_path, f"step-{step:06d}", _fill, keep=2)
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
