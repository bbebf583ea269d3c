"""The sandbox image built by deploy/build-images.sh: present, unprivileged, python3.11 + numpy.

Containers here run with the same lockdown the executor uses: no network, read-only root,
no capabilities, no-new-privileges and a small tmpfs /tmp.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.docker

SANDBOX_IMAGE = "coderl-sandbox:latest"
SANDBOX_UID = 65534


@pytest.fixture(scope="module")
def client(docker_client):
    """The shared engine client (tests/docker/conftest.py); its image check comes from sandbox_image."""
    return docker_client


def run_locked_down(client, command: list[str], timeout_s: float = 60) -> str:
    """Run `command` in a locked-down sandbox container; return its stdout, fail on non-zero exit."""
    container = client.containers.run(
        SANDBOX_IMAGE,
        command=command,
        detach=True,
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        tmpfs={"/tmp": "size=64m"},
        mem_limit="256m",
        pids_limit=64,
    )
    try:
        status = container.wait(timeout=timeout_s)
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, f"{command} exited {status['StatusCode']}:\n{stderr}"
    return stdout


def test_image_config(sandbox_image):
    config = sandbox_image.attrs["Config"]
    assert config["User"] == f"{SANDBOX_UID}:{SANDBOX_UID}"
    assert config["WorkingDir"] == "/opt/coderl"
    assert config["Cmd"] == ["python3", "-E", "-s", "-m", "harness.server"]
    assert (config.get("Labels") or {}).get("org.coderl.role") == "sandbox"
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("OPENBLAS_NUM_THREADS") == "1"


def test_runs_unprivileged_with_numpy(client, sandbox_image):
    out = run_locked_down(client, ["python3", "-c", "import os, numpy; print(os.getuid())"])
    assert out.strip() == str(SANDBOX_UID)


def test_python_is_311(client, sandbox_image):
    out = run_locked_down(client, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert out.strip() == "3.11"


def test_harness_is_read_only_for_sandbox_user(client, sandbox_image):
    script = (
        "import os, sys\n"
        "root = '/opt/coderl/harness'\n"
        "assert os.path.isdir(root), root\n"
        "for d, _, files in os.walk(root):\n"
        "    for p in [d, *(os.path.join(d, f) for f in files)]:\n"
        "        st = os.lstat(p)\n"
        "        assert st.st_uid == 0 and not st.st_mode & 0o002, (p, st.st_uid, oct(st.st_mode))\n"
        "        assert not os.access(p, os.W_OK), p\n"
        "print('ok')\n"
    )
    assert run_locked_down(client, ["python3", "-c", script]).strip() == "ok"
