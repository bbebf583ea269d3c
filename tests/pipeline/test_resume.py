"""A killed run resumes from its checkpoint without losing in-flight samples or training twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driver.metrics import read_metrics
from learner.checkpoint import latest_checkpoint

from .conftest import SMALL_RUN, audit_records, remove_containers_of_dead_owners

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]


def _command(run_dir: Path, *extra: str) -> list[str]:
    overrides = [*SMALL_RUN, "phases.rl_steps=8", "checkpoint_every=2", "phases.critic_steps=0"]
    return [
        sys.executable,
        "-m",
        "driver",
        "--no-ray",
        "--run-dir",
        str(run_dir),
        "--set",
        *overrides,
        *extra,
    ]


def test_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log_file = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        _command(run_dir), cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while True:  # kill it once it trains past a mid-RL checkpoint (that update is rolled back)
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is not None and (run_dir / "audit.jsonl").is_file():
                state = json.loads((checkpoint / "state.json").read_text())
                started = [r["policy_version"] for r in audit_records(run_dir)]
                if (
                    state["phase"] == "rl"
                    and state["phase_steps"].get("rl", 0) >= 2
                    and max(started) >= state["policy_version"]
                ):
                    break
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no RL checkpoint within 300 s"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)  # the driver only: its redis-server is orphaned, as in a crash
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        remove_containers_of_dead_owners()
    killed_at = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    version_at_kill = killed_at["policy_version"]
    records_before = audit_records(run_dir)

    second = subprocess.run(
        _command(run_dir, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    assert "held-out pass@1" in second.stdout

    final = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    assert final["phase"] == "done"
    assert final["policy_version"] == 30 + 8

    # The weights' lineage: updates up to the checkpoint, then the resumed run's. No sample twice.
    resumed = audit_records(run_dir)[len(records_before) :]
    kept = [r for r in records_before if r["policy_version"] < version_at_kill]
    lineage = kept + resumed
    assert len(lineage) == 8
    trained = [s for record in lineage for s in record["trained"]]
    assert len(trained) == len(set(trained))
    # Samples the killed run produced (incarnation 0) were still trained on after the resume.
    assert any("i0r" in s for record in resumed for s in record["trained"])
    assert all("i1r" in s or "i0r" in s for s in trained)
    # Admission counted the killed run's rounds still in Redis: nothing went stale. The learner's
    # run-wide counters went on from the checkpoint's rather than from zero.
    counters = final["counters"]
    assert counters.get("buffer/dropped/stale_samples", 0) == 0
    owed = 8 - killed_at["phase_steps"]["rl"]
    settled_at_kill = killed_at["counters"]["buffer/settled/samples"]
    assert counters["buffer/settled/samples"] >= settled_at_kill + owed * 8  # from 0: only owed * 8
    # metrics.jsonl goes on from the checkpoint: no step logged twice by the killed and the resumed
    # run, the policy version never going back; the killed run's later records are kept aside.
    metrics = read_metrics(run_dir / "metrics.jsonl")
    versions = [m["learner/policy_version"] for m in metrics if "learner/policy_version" in m]
    assert versions == sorted(versions) and len(versions) == len(set(versions))
    assert [m["step"] for m in metrics] == sorted(m["step"] for m in metrics)
