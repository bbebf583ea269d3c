"""A run directory that fills up (or turns read-only) stops the run with one line and exit code 3,
leaves no half-written ``.tmp`` folder, and ``--resume`` continues from the last complete
checkpoint once there is room. The run directory is a small tmpfs mounted for the test."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from learner.checkpoint import latest_checkpoint

from .external import REPO, environment, redis_url, start_worker, train_command

__all__ = ["redis_url"]  # a fixture

pytestmark = [pytest.mark.slow, pytest.mark.redis]

# The tiny model's checkpoint inside SFT (step 2, with optimizer states) takes ~4.3 MB, the one at
# its end (step 4) ~2.2 MB: the first fits, the second cannot.
SIZE = "5600k"
ROOMY = "64m"
RUN = ["phases.sft_steps=4", "sft_checkpoint_every=2", "phases.critic_steps=0", "phases.rl_steps=0"]
RUN += ["problems.suite.train_size=40", "problems.suite.held_out_size=4", "eval.max_new_tokens=32"]


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    done = mount("-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def train(run_dir: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [*train_command(run_dir, url, "disk", *RUN), *extra]
    return subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=400)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 3, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return [line for line in done.stderr.splitlines() if line.strip()][-1]


def leftovers(run_dir: Path) -> list[str]:
    return [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_then_read_only_run_directory_stops_with_one_line_and_resumes(
    small_disk: Path, redis_url: str, tmp_path: Path
) -> None:
    run_dir = small_disk / "run"
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(redis_url, "disk", "disk-worker", log)
        try:
            full = train(run_dir, redis_url)
            error = one_line_error(full)
            assert error.startswith(f"coderl train: error: cannot write the run directory {run_dir}: "), error
            assert "No space left on device" in error, error
            assert "command with --resume continues from" in error, error
            assert error.endswith("continues from its last complete checkpoint, step-000002"), error
            assert leftovers(run_dir) == []
            last = latest_checkpoint(run_dir)
            assert last is not None and last.name == "step-000002"

            assert mount("-o", "remount,ro", str(small_disk)).returncode == 0
            read_only = one_line_error(train(run_dir, redis_url, "--resume"))
            assert "Read-only file system" in read_only and str(run_dir) in read_only, read_only

            assert mount("-o", f"remount,rw,size={ROOMY}", str(small_disk)).returncode == 0
            resumed = train(run_dir, redis_url, "--resume")
        finally:
            worker.kill()
            worker.wait(timeout=30)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "from step-000002" in resumed.stderr, resumed.stderr[-4000:]
    state = json.loads((run_dir / "checkpoints" / "after-sft" / "state.json").read_text())
    assert state["phase_steps"]["sft"] == 4 and state["phase"] == "done"
    assert leftovers(run_dir) == []
