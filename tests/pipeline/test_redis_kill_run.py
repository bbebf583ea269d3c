"""The run's own redis-server killed with SIGKILL in the middle of the RL phase of a whole
`coderl train` run (real processes: the driver, its redis-server, Docker sandboxes).

The run recovers by itself: the watcher in driver/services.py restarts Redis from its append-only
file and every role (learner, sampler, executor workers, driver) retries through the gap. No sample
is trained twice, every sampled program is trained, counted as dropped (logged in the learner's
``buffer/dropped/*`` counters) or still waiting in Redis at the end, and nothing the run started is
left running. A Redis that cannot come back stops the run after execution.redis_outage_s with one
line and exit code 3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import redis

from driver.services import free_port
from learner.checkpoint import latest_checkpoint

from .conftest import SMALL_RUN, audit_records

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
RL_STEPS = 6
KILL_AFTER = (2, 4)  # kill Redis after these RL updates
PER_ROUND = 2 * 4  # sampler.problems_per_round x sampler.sampling.n (greedy decodes apart)
LEFT_GRACE_S = 20
SETTINGS = [*SMALL_RUN, "phases.sft_steps=2", "phases.critic_steps=0", f"phases.rl_steps={RL_STEPS}"]


def _train(run_dir: Path, *settings: str, ray: bool = False) -> list[str]:
    command = [sys.executable, "-m", "coderl.cli", "train", "--run-dir", str(run_dir)]
    return [*command, *([] if ray else ["--no-ray"]), "--set", *SETTINGS, *settings]


def _environment(path_first: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODERL_")} | {"PYTHONUNBUFFERED": "1"}
    env["RAY_ADDRESS"] = "local"  # a Ray run starts its own instance, never joins another one here
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return env


def _redis_pid(run_dir: Path) -> int | None:
    """The run's redis-server, from the pidfile driver/services.py has it write."""
    try:
        pid = int((run_dir / "redis" / "redis.pid").read_text().strip())
        alive = b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if alive else None


def _wait_for_rl_updates(run: subprocess.Popen[str], run_dir: Path, updates: int, log: Path) -> int:
    """Wait until the learner has made ``updates`` RL updates; the run's redis-server pid then."""
    deadline = time.monotonic() + 400
    while True:
        audit = run_dir / "audit.jsonl"
        pid = _redis_pid(run_dir)
        if audit.is_file() and len(audit_records(run_dir)) >= updates and pid is not None:
            return pid
        assert run.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no {updates} RL updates within 400 s"
        time.sleep(0.1)


def _wait_for_new_redis(run: subprocess.Popen[str], run_dir: Path, killed: int, log: Path) -> int:
    deadline = time.monotonic() + 30
    while (pid := _redis_pid(run_dir)) in (None, killed):
        assert run.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "the killed redis-server was not restarted within 30 s"
        time.sleep(0.02)
    return pid


def _stop(run: subprocess.Popen[str], run_dir: Path) -> None:
    """After a failure: the run, and its redis-server (in a session of its own)."""
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    pid = _redis_pid(run_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def _nothing_left_running(driver_pid: int, redis_pids: list[int], redis_url: str) -> list[str]:
    """What the run left running, after giving what is already on its way out (Ray's processes,
    sandbox containers removing themselves) a few seconds to go; logs what it had to wait for."""
    deadline = time.monotonic() + LEFT_GRACE_S
    first = left = _left_running(driver_pid, redis_pids, redis_url)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _left_running(driver_pid, redis_pids, redis_url)
    if first:
        print(f"still going when the run exited, gone within {LEFT_GRACE_S} s: {first}")
    return left


def _redis_url(pid: int) -> str:
    # redis-server sets its process title to "redis-server 127.0.0.1:PORT"
    port = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    assert port is not None, Path(f"/proc/{pid}/cmdline").read_bytes()
    return f"redis://127.0.0.1:{port.group(1).decode()}/0"


def _left_running(driver_pid: int, redis_pids: list[int], redis_url: str) -> list[str]:
    """Processes and sandbox containers the run started that are still there: its redis-servers,
    any process of the session the test started it in (Ray's processes included), and the sandbox
    containers of its executors (labelled with the run's Redis, executor/sandbox/owner.py)."""
    left = [f"redis-server {pid}" for pid in redis_pids if Path(f"/proc/{pid}").exists()]
    for proc in Path("/proc").iterdir():
        try:
            state, _, _, session = (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[:4]
            if proc.name.isdigit() and int(session) == driver_pid and state != b"Z":  # Z: dead already
                left.append(f"process {proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
        except (OSError, IndexError, ValueError):
            continue
    client = docker.from_env()
    label = f"org.coderl.sandbox.redis={redis_url}"
    left += [f"container {c.name}" for c in client.containers.list(all=True, filters={"label": label})]
    client.close()
    return left


def _rollouts_left(run_dir: Path, run_id: str) -> list[dict]:
    """The rollouts still in the run's Redis data (results the learner had not settled when the run
    ended), read from its append-only file by a redis-server of our own on a copy of it."""
    data = run_dir.parent / "redis-copy"
    shutil.copytree(run_dir / "redis", data)
    (data / "redis.pid").unlink(missing_ok=True)
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    server = subprocess.Popen([*args, "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "could not read the run's append-only file"
                time.sleep(0.1)
        keys = list(client.scan_iter(match=f"*:train:{run_id}:rollout:*", count=1000))
        return [json.loads(blob) for blob in client.mget(keys)] if keys else []
    finally:
        client.close()
        server.kill()
        server.wait(timeout=10)


@pytest.mark.parametrize(
    "on_ray",
    [
        pytest.param(False, id="in-process"),
        pytest.param(True, id="ray", marks=pytest.mark.ray),  # roles in their own processes, decoupled
    ],
)
def test_kill_9_of_the_runs_redis_mid_rl_the_run_recovers_by_itself(tmp_path: Path, on_ray: bool) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen(
            _train(run_dir, ray=on_ray), cwd=REPO, env=_environment(), stdout=out, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
    killed: list[int] = []
    try:
        for updates in KILL_AFTER:
            pid = _wait_for_rl_updates(run, run_dir, updates, log)
            url = _redis_url(pid)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            replaced = _wait_for_new_redis(run, run_dir, pid, log)  # the watcher's restart
        run.wait(timeout=600)
    finally:
        _stop(run, run_dir)
    output = log.read_text()
    assert run.returncode == 0, output[-5000:]
    assert "held-out pass@1" in output and "Traceback" not in output, output[-5000:]
    # The watcher restarted it (from its append-only file) after each kill; no role failed.
    assert output.count("restarting it from its append-only file") == len(KILL_AFTER), output[-5000:]
    assert output.count("redis-server of the run is back") == len(KILL_AFTER), output[-5000:]
    assert " failed (" not in output and "recovering" not in output, output[-5000:]
    assert _nothing_left_running(run.pid, [*killed, replaced], url) == []

    # No sample trained twice, every update a full batch.
    records = audit_records(run_dir)
    assert len(records) == RL_STEPS
    trained = [s for record in records for s in record["trained"]]
    assert len(trained) == len(set(trained)) == RL_STEPS * 8
    # None lost without being logged: every sampled program the samplers published is trained,
    # counted as dropped, or still waiting in Redis (published after the last update needed it).
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())  # type: ignore[operator]
    assert state["phase"] == "done"
    counters = state["counters"]
    dropped = {k: v for k, v in counters.items() if k.startswith("buffer/dropped/") and v}
    assert dropped == {}, dropped  # a kill with an fsynced append-only file loses nothing
    published = sum(s["rounds"] for s in state["samplers"]) * PER_ROUND
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    waiting = [r["sample_id"] for r in _rollouts_left(run_dir, run_id) if not r.get("is_greedy")]
    assert not set(waiting) & set(trained)
    assert counters["buffer/settled/samples"] == len(trained)
    assert published == len(trained) + len(waiting), (published, len(trained), waiting)


def test_a_runs_redis_that_cannot_come_back_stops_the_run_with_one_line_and_exit_3(
    tmp_path: Path,
) -> None:
    """The redis-server binary the run started from (found on PATH) is gone when Redis is killed:
    the watcher's restarts fail, and after execution.redis_outage_s the run stops with one line."""
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    real = shutil.which("redis-server")
    assert real is not None
    (bin_dir / "redis-server").symlink_to(real)
    outage_s = 5
    command = _train(run_dir, f"execution.redis_outage_s={outage_s}")
    run = subprocess.Popen(
        command, cwd=REPO, env=_environment(bin_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 400
        while (pid := _redis_pid(run_dir)) is None or not (run_dir / "audit.jsonl").is_file():
            assert run.poll() is None, run.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "no RL update within 400 s"
            time.sleep(0.1)
        (bin_dir / "redis-server").unlink()  # the watcher cannot start it again
        url = _redis_url(pid)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = run.communicate(timeout=300)
        took = time.monotonic() - killed
    finally:
        _stop(run, run_dir)
    assert run.returncode == 3, stderr[-5000:]
    assert "Traceback" not in stderr, stderr[-5000:]
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr[-5000:]
    assert errors[0].startswith("coderl train: error: Redis at redis://127.0.0.1:"), errors[0]
    assert f"unreachable for {outage_s} s" in errors[0] and "--resume" in errors[0], errors[0]
    assert f"(run directory {run_dir})" in errors[0], errors[0]
    assert "restarting redis-server failed" in stderr, stderr[-5000:]
    assert took < outage_s + 60, took  # the limit, then the shutdown: not learner.wait_s (240 s)
    assert _nothing_left_running(run.pid, [pid], url) == []
