"""`ray job submit` as the README documents it, against a `ray start --head` with token
authentication (Ray's default once a token exists): the run succeeds, its actors are in the
dashboard's actor list for whoever has the token, and requests without it are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import RayCluster, run_id, submit

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.redis, pytest.mark.docker]


def test_job_submit_with_token_authentication(ray_cluster: RayCluster, tmp_path: Path) -> None:
    ray_cluster.start_head(num_cpus=2)
    run_dir = tmp_path / "run"  # absolute: a relative run_dir would land in the job's copy of the repo

    submitted = submit(ray_cluster, run_dir)
    assert submitted.returncode == 0, submitted.stdout[-4000:] + submitted.stderr[-4000:]

    (job,) = ray_cluster.api("/api/jobs/")
    assert job["status"] == "SUCCEEDED", job
    job_id = job["submission_id"]
    status = ray_cluster.ray("job", "status", f"--address={ray_cluster.dashboard}", job_id)
    assert status.returncode == 0 and f"Job '{job_id}' succeeded" in status.stdout, status.stdout

    run = run_id(run_dir)
    names = {actor["name"] for actor in ray_cluster.actors()}
    assert {f"coderl-{run}-{role}" for role in ("learner", "sampler-0", "executor-0")} <= names
    assert (run_dir / "metrics.jsonl").is_file()

    # Without the token, or with another one, the dashboard and the Jobs API refuse to answer.
    for path in ("/api/jobs/", "/api/v0/actors?limit=10"):
        assert ray_cluster.status_of(path, token=None) == 401
        assert ray_cluster.status_of(path, token="0" * 64) == 403
    # A client without RAY_AUTH_MODE=token sends no token (the failure the README warns about).
    dashboard = f"--address={ray_cluster.dashboard}"
    refused = ray_cluster.ray("job", "list", dashboard, env={"RAY_AUTH_MODE": None})
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()
