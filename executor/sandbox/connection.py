"""Connections to one sandbox server: a Docker container's attach stream, or a local process.

Both carry wire frames; the host never trusts their content beyond the frame limits: a reply
that is late, oversized or malformed is a SandboxFault (infrastructure), never a verdict.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from executor.harness import wire
from executor.harness.protocol import REQUIRED_ISOLATION, InfoKey, Op, RequestKey

from ..config import SandboxConfig
from . import owner as ownership
from . import seccomp

log = logging.getLogger(__name__)
HARNESS_PARENT = Path(__file__).resolve().parent.parent  # holds the harness package
MAX_REPLY = 96 * 1024 * 1024
SANDBOX_CAPABILITIES = ("KILL", "SETUID", "SETGID", "SETPCAP")


class SandboxFault(Exception):
    """The sandbox failed while running a program: retry on a fresh sandbox."""


class SandboxUnavailable(SandboxFault):
    """No sandbox could be had at all (none starts): an infrastructure fault, no program's."""


class Connection:
    """Request/response over frames with a deadline."""

    def __init__(self) -> None:
        self._frames = wire.FrameBuffer(MAX_REPLY)
        self._ready: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _receive_raw(self, timeout: float) -> bytes:
        raise NotImplementedError

    def close(self, force: bool = True) -> None:
        raise NotImplementedError

    def _next_frame(self, deadline: float) -> dict[str, Any]:
        while not self._ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxFault("sandbox did not answer in time")
            data = self._receive_raw(remaining)
            if not data:
                raise SandboxFault("sandbox closed its stream")
            try:
                self._ready.extend(self._frames.feed(data))
            except wire.FrameError as exc:
                raise SandboxFault(f"sandbox sent a bad frame: {exc}") from None
        return self._ready.pop(0)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        self.info = self._next_frame(time.monotonic() + timeout)
        if not self.info.get(InfoKey.READY):
            raise SandboxFault(f"sandbox did not start: {self.info}")
        return self.info

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            self._send(wire.encode_frame(message))
        except OSError as exc:
            raise SandboxFault(f"cannot write to sandbox: {exc}") from None
        reply = self._next_frame(time.monotonic() + timeout)
        if InfoKey.ERROR in reply:
            raise SandboxFault(f"sandbox error: {reply[InfoKey.ERROR]}")
        return reply


class ProcessConnection(Connection):
    """WEAKER opt-in backend: the harness as a local process. It has the limits, fresh
    processes and working directories, but NOT the container's isolation: the program shares
    the host's filesystem, network and user, and daemons that leave the session survive."""

    def __init__(self, config: SandboxConfig, core: int | None = None) -> None:
        super().__init__()
        self._workroot = tempfile.mkdtemp(prefix="coderl-sandbox-")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "CODERL_WORKROOT": self._workroot,
            "CODERL_PRELOAD_NUMPY": "1" if config.preload_numpy else "0",
            "LANG": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-E", "-s", "-m", "harness.server"],
            cwd=HARNESS_PARENT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
            preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}),
        )
        assert self._process.stdout is not None and self._process.stdin is not None
        self._out = self._process.stdout.fileno()
        self.wait_ready(config.start_timeout_s)

    def _send(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        self._process.stdin.flush()

    def _receive_raw(self, timeout: float) -> bytes:
        readable, _, _ = select.select([self._out], [], [], timeout)
        if not readable:
            raise SandboxFault("sandbox did not answer in time")
        return os.read(self._out, 1 << 20)

    def close(self, force: bool = True) -> None:
        try:
            os.killpg(self._process.pid, 9)
        except ProcessLookupError:
            pass
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        subprocess.run(["rm", "-rf", self._workroot], check=False)


_DOCKER_HEADER = struct.Struct(">BxxxI")


class DockerConnection(Connection):
    """A long-lived hardened container whose PID 1 is the harness server (see server.py)."""

    LABEL = ownership.LABEL
    CORE_LABEL = f"{ownership.LABEL}.core"

    def __init__(
        self, client: Any, config: SandboxConfig, labels: Mapping[str, str], core: int | None = None
    ) -> None:
        """``labels``: the owner's (executor/sandbox/owner.py owner_labels), for the reaper."""
        super().__init__()
        import docker

        self._client = client
        self._demux = bytearray()
        api = client.api
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={config.tmpfs_mb}m,mode=1777"},
            # Root in the container only long enough for PID 1 to split into the harness uid and the
            # program uid (executor/harness/privileges.py); these four capabilities are all it keeps.
            cap_drop=["ALL"],
            cap_add=list(SANDBOX_CAPABILITIES),
            security_opt=["no-new-privileges", f"seccomp={seccomp.profile_json()}"],
            pids_limit=config.pids_limit,
            mem_limit=f"{config.container_memory_mb}m",
            memswap_limit=f"{config.container_memory_mb}m",
            nano_cpus=int(config.container_cpus * 1e9),
            cpuset_cpus=None if core is None else str(core),
            shm_size="16m",
            ipc_mode="private",
            ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
            auto_remove=True,  # gone once its PID 1 exits
        )
        container_config = api.create_container_config(
            config.image,
            None,
            stdin_open=True,
            tty=False,
            detach=True,
            user="0:0",
            environment={"CODERL_PRELOAD_NUMPY": str(int(config.preload_numpy))},
            labels={**labels, self.LABEL: "1", self.CORE_LABEL: "" if core is None else str(core)},
            host_config=host_config,
        )
        # The harness's stdin closes when this stream does: it then exits, and the container
        # removes itself, even when the process holding the stream was killed.
        container_config["StdinOnce"] = True
        created = api.create_container_from_config(container_config)
        self.container = client.containers.prepare_model(created)  # by id: no inspect call
        try:
            attached = self.container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
            self._sock: socket.socket = _own_socket(attached)
            self.container.start()
            self.wait_ready(config.start_timeout_s)
            missing = [key for key in REQUIRED_ISOLATION if self.info.get(key) is not True]
            if missing:
                raise SandboxFault(f"sandbox started without {', '.join(missing)}: {self.info}")
        except Exception:
            self.close()
            raise

    def _send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _receive_raw(self, timeout: float) -> bytes:
        """Demultiplex Docker's attach stream (8-byte headers) and return stdout payload."""
        deadline = time.monotonic() + timeout
        while True:
            payload = self._pop_stdout()
            if payload:
                return payload
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self._sock], [], [], max(remaining, 0))
            if not readable:
                raise SandboxFault("sandbox did not answer in time")
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                return b""
            self._demux += chunk

    def _pop_stdout(self) -> bytes:
        out = bytearray()
        while len(self._demux) >= _DOCKER_HEADER.size:
            stream, size = _DOCKER_HEADER.unpack_from(self._demux)
            if len(self._demux) < _DOCKER_HEADER.size + size:
                break
            body = self._demux[_DOCKER_HEADER.size : _DOCKER_HEADER.size + size]
            del self._demux[: _DOCKER_HEADER.size + size]
            if stream == 1:
                out += body
        return bytes(out)

    def close(self, force: bool = True) -> None:
        """Tell the harness to exit, which ends the container, which then removes itself.
        ``force`` (a sandbox that misbehaved) also removes it from here, in the background: removal
        can take a while, and the caller never waits for it."""
        try:
            if hasattr(self, "_sock"):
                if not force:
                    self._sock.sendall(wire.encode_frame({RequestKey.OP: Op.EXIT}))
                self._sock.close()
        except OSError:
            pass
        if force:
            threading.Thread(target=_remove_quietly, args=(self.container,), daemon=True).start()


def _own_socket(attached: Any) -> socket.socket:
    """A socket of our own on the attach stream: a duplicate of docker-py's descriptor, whose
    objects are then closed. docker-py's socket is owned by its HTTP response and connection pool,
    which close it whenever they are collected or recycled; reading it afterwards fails with
    EBADF (seen under load), or reads another file that reused the descriptor number."""
    inner = getattr(attached, "_sock", attached)
    own = socket.socket(fileno=os.dup(inner.fileno()))
    for stream in (attached, inner):
        try:
            stream.close()
        except OSError:
            pass
    return own


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception as exc:  # noqa: BLE001 - already gone, or the engine is down
        log.debug("removing sandbox %s: %s", container.short_id, exc)


def remove_stale_containers(client: Any, owner: str | None = None) -> int:
    """Remove sandbox containers left by earlier runs (all of them, or one pool's); the containers
    of owners that are dead only: ``reap_dead_containers``."""
    label = f"{ownership.OWNER_LABEL}={owner}" if owner else DockerConnection.LABEL
    # sparse: no per-container inspect, so containers removed meanwhile cannot raise NotFound
    stale = client.containers.list(all=True, sparse=True, filters={"label": label})
    for container in stale:
        _remove_quietly(container)
    return len(stale)


def reap_dead_containers(client: Any, me: SandboxConfig) -> int:
    """Remove the sandbox containers of owners that are dead (executor/sandbox/owner.py says which,
    and what it guarantees), judged by ``me.owner``'s Redis and prefix; how many were removed."""
    return ownership.reap_dead_owners(client, me.owner, _remove_quietly)
