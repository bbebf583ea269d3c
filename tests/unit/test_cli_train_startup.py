"""`coderl train` as a new user meets its start-up failures: one line, exit code 2 or 3, and no run
directory left behind to block the retry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each case starts the command in a fresh interpreter


def _train(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "coderl.cli", "train", "--no-ray", "--run-dir", str(run_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "policy.model=tnyy"],
            "policy.model: model 'tnyy' is neither a preset (did you mean 'tiny'?)",
        ),
        (["--set", "problems.source=files", "problems.sft_path=/no/such.jsonl"], "problems:"),
        (["--resume"], "holds no run to resume"),
    ],
    ids=["unknown model", "missing problem file", "resume of nothing"],
)
def test_a_configuration_mistake_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    run_dir = tmp_path / "run"
    done = _train(run_dir, *args)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_an_unreachable_docker_engine_is_exit_3(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = os.environ | {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = _train(run_dir, env=env)
    assert done.returncode == 3, done.stderr
    assert "cannot reach the Docker engine" in done.stderr and "Traceback" not in done.stderr
    assert not run_dir.exists()
