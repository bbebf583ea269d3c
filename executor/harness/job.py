"""One job inside the server: the candidate's pipes, the event loop that enforces the limits,
and the raw result sent back to the host (which alone judges it)."""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from . import sysutil, wire

if TYPE_CHECKING:
    from .server import Server

TERMINAL_EVENTS = {"returned", "raised", "exited", "compile_error", "exception"}
EVENT_KEYS = ("event", "type", "builtin", "message", "traceback", "code", "value")
EVENT_TEXTS = ("event", "type", "message", "traceback")  # cut to MAX_EVENT_TEXT; a value never is
MAX_EVENTS = 16
MAX_EVENT_TEXT = 4000
CPU_POLL_S = 0.01
EXPANSION = 5  # a JSON frame re-encodes to at most this many times its size (1e15 -> 1000000000000000.0)


class Job:
    def __init__(self, request: dict[str, Any], workdir: str, seq: int) -> None:
        self.mode = str(request.get("mode", "stdio"))
        self.request, self.workdir, self.seq = request, workdir, seq
        limits = request.get("limits") or {}
        self.limits = {
            "cpu_s": float(limits.get("cpu_s", 4.0)),
            "memory_bytes": int(limits.get("memory_bytes", 1 << 30)),
            "file_bytes": int(limits.get("file_bytes", 64 << 20)),
            "open_files": int(limits.get("open_files", 256)),
        }
        self.wall_s = float(limits.get("wall_s", 2 * self.limits["cpu_s"] + 1))
        self.output_cap = int(limits.get("output_bytes", 16 << 20))
        self.stderr_keep = int(limits.get("stderr_keep_bytes", 64 << 10))
        self.control_left = self.output_cap  # bytes of events, counted as they will be re-encoded
        self.stdin_data = memoryview(str(request.get("stdin", "")).encode("utf-8", "surrogateescape"))
        self.stdout, self.stderr = bytearray(), bytearray()
        self.stdout_bytes = self.stderr_bytes = 0
        self.events: list[dict[str, Any]] = []
        self.record: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.killed_for: str | None = None
        self.candidate_pid = -1
        self.candidate_status: tuple[int, float, int] | None = None
        self.cpu_s = 0.0
        self.memory_before = 0
        self.oom_first = False  # memory ran out (limit reached, OOM kill) before a CPU or wall-clock kill
        self.kill_rounds = 0
        self.protocol_violation = False
        self.entry_point = request.get("fn_name") if isinstance(request.get("fn_name"), str) else None
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._exit_seen: float | None = None
        self._pending_call = self.mode == "call"
        self._open_pipes()

    def _open_pipes(self) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.ctl_server, self.ctl_candidate = socket.socketpair()
        for fd in (self.stdin_w, self.out_r, self.err_r):
            os.set_blocking(fd, False)
        self.ctl_buffer = wire.FrameBuffer(self.output_cap + (1 << 20))
        self.open_fds: set[int] = {self.stdin_w, self.out_r, self.err_r}

    # --- set-up, called by the server -------------------------------------------------------
    def candidate_fds(self) -> list[int]:
        return [self.stdin_r, self.out_w, self.err_w, self.ctl_candidate.fileno()]

    def close_candidate_ends(self) -> None:
        for fd in (self.stdin_r, self.out_w, self.err_w):
            os.close(fd)
        self.ctl_candidate.close()
        if self.mode != "stdio":  # only stdio programs get input
            self._close(self.stdin_w)

    def send_candidate_job(self) -> None:
        job = {key: self.request.get(key, "") for key in ("mode", "program", "prelude")}
        job["module_name"] = "__main__" if self.mode == "stdio" else "solution"
        try:
            self.ctl_server.sendall(wire.encode_frame(job))
        except OSError:
            pass

    def hand_channel_to_runner(self, runner_sock: socket.socket) -> bool:
        """Assert mode: the runner, not the server, talks to the candidate. False if the runner
        could not take the job (it is then replaced and the tests count as not run)."""
        frame = wire.encode_frame(
            {
                "seq": self.seq,
                "setup_code": str(self.request.get("setup_code", "")),
                "test_code": str(self.request.get("test_code", "")),
                "entry_point": self.entry_point,
                "memory_bytes": self.limits["memory_bytes"],
            }
        )
        try:
            socket.send_fds(runner_sock, [frame[: wire.HEADER.size]], [self.ctl_server.fileno()])
            runner_sock.sendall(frame[wire.HEADER.size :])
        except OSError:
            return False
        finally:
            self.ctl_server.close()
        return True

    # --- the loop ------------------------------------------------------------------------------
    def loop(self, candidate_pid: int, server: Server) -> None:
        self.candidate_pid = candidate_pid
        self.started = time.monotonic()  # the clock starts when the program exists
        deadline = self.started + self.wall_s
        next_cpu_check = 0.0
        if self.ctl_server.fileno() >= 0:
            self.ctl_server.setblocking(False)
        while self.stop_reason is None:
            now = time.monotonic()
            if now >= deadline:
                self._stop("wall", killed=True)
                break
            if now >= next_cpu_check:
                next_cpu_check = now + CPU_POLL_S
                if server.meter.job_cpu_s(candidate_pid) > self.limits["cpu_s"]:
                    self._stop("cpu", killed=True)
                    break
            readers = [fd for fd in (self.out_r, self.err_r) if fd in self.open_fds]
            if self.ctl_server.fileno() >= 0:
                readers.append(self.ctl_server.fileno())
            if self.mode == "assert" and server.runner_alive:
                readers.append(server.runner_sock.fileno())
            if not server.zygote_gone:
                readers.append(server.zygote_sock.fileno())
            writers = [self.stdin_w] if self.stdin_w in self.open_fds else []
            timeout = min(CPU_POLL_S, max(0.0, deadline - now))
            readable, writable, _ = select.select(readers, writers, [], timeout)
            if writable:
                self._feed_stdin()
            for fd in readable:
                self._read(fd, server)
            self._check_done(server)
        self.elapsed = time.monotonic() - self.started

    def _stop(self, reason: str, killed: bool = False) -> None:
        self.stop_reason = reason
        if killed:
            self.killed_for = reason
        if reason in ("cpu", "wall"):
            self.oom_first = sysutil.memory_exhaustion() > self.memory_before

    def _feed_stdin(self) -> None:
        try:
            written = os.write(self.stdin_w, self.stdin_data[: 1 << 16])
        except BlockingIOError:
            return
        except OSError:  # the program closed its stdin
            self._close(self.stdin_w)
            return
        self.stdin_data = self.stdin_data[written:]
        if not self.stdin_data:
            self._close(self.stdin_w)

    def _read(self, fd: int, server: Server) -> None:
        if fd == server.zygote_sock.fileno():
            server.poll_zygote()
            return
        if fd == self.ctl_server.fileno():
            self._read_control()
            return
        if server.runner_alive and fd == server.runner_sock.fileno():
            self.take_record(server)
            return
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(fd)
            return
        self._store(fd, data)

    def take_record(self, server: Server) -> None:
        """Read the runner's socket; keep this job's record (the runner lost: record stays None)."""
        for record in server.read_runner():
            if record.get("seq") == self.seq and self.record is None:
                self.record = record

    def _store(self, fd: int, data: bytes) -> None:
        if fd == self.out_r:
            self.stdout_bytes += len(data)
            room = self.output_cap - len(self.stdout)
            self.stdout += data[: max(room, 0)]
            if self.stdout_bytes > self.output_cap and self.stop_reason is None:
                self._stop("output", killed=True)
        elif fd == self.err_r:
            self.stderr_bytes += len(data)
            self.stderr += data[: max(self.stderr_keep - len(self.stderr), 0)]
            if self.stderr_bytes > self.output_cap and self.stop_reason is None:
                self._stop("output", killed=True)

    def _read_control(self) -> None:
        try:
            data = self.ctl_server.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.ctl_server.close()
            return
        try:
            frames = self.ctl_buffer.feed_sized(data)
        except wire.FrameError:
            # The program corrupted its own channel: stop listening. A call-based answer is then
            # void; a stdio program is still judged on its output.
            self.protocol_violation = True
            self.ctl_server.close()
            if self.mode == "call" and self.stop_reason is None:
                self._stop("protocol violation")
            return
        for event, size in frames:
            self._take_event(_sanitized(event), size)

    def _take_event(self, event: dict[str, Any], raw_bytes: int) -> None:
        """Count the event against the control budget in the bytes it will take in the reply
        (exactly, when its raw size could exceed what is left); past the budget the program has
        exceeded its output limit."""
        size = raw_bytes if raw_bytes * EXPANSION <= self.control_left else len(json.dumps(event))
        self.control_left -= size
        if self.control_left < 0:
            if self.stop_reason is None:
                self._stop("output", killed=True)
            return
        if len(self.events) < MAX_EVENTS:
            self.events.append(event)
        if self.mode == "call" and event.get("event") == "ready" and self._pending_call:
            self._pending_call = False
            call = {"op": "call", "name": self.request.get("fn_name"), "args": self.request.get("args", [])}
            try:
                self.ctl_server.setblocking(True)
                self.ctl_server.sendall(wire.encode_frame(call))
                self.ctl_server.setblocking(False)
            except OSError:
                pass
        elif self.mode == "call" and event.get("event") in TERMINAL_EVENTS and self.stop_reason is None:
            self._stop("answered")

    def _check_done(self, server: Server) -> None:
        if self.stop_reason is not None:
            return
        if self.mode == "assert":
            if self.record is not None:
                self._stop("tests finished")
            elif not server.runner_alive:
                self._stop("runner lost")
            return
        if self.candidate_pid not in server.statuses and server.zygote_stopped():
            server.kill_zygote()  # stopped by the program: its exit would never be reported
        sysutil.reap_any(server.statuses)  # the candidate is ours to reap if its zygote died
        if self.candidate_pid in server.statuses:
            # Give pipes a moment to reach EOF; daemons holding them are killed afterwards.
            if self.out_r in self.open_fds or self.err_r in self.open_fds:
                if self._exit_seen is None:
                    self._exit_seen = time.monotonic()
                if time.monotonic() - self._exit_seen < 0.05:
                    return
            self._stop("exited")

    # --- after the kill -----------------------------------------------------------------------
    def drain(self) -> None:
        """Read what the dead processes left in the pipes (all writers are gone: EOF comes)."""
        deadline = time.monotonic() + 1.0
        readers = [fd for fd in (self.out_r, self.err_r) if fd in self.open_fds]
        while readers and time.monotonic() < deadline:
            readable, _, _ = select.select(readers, [], [], 0.05)
            for fd in readable:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    self._close(fd)
                    readers.remove(fd)
                elif fd == self.out_r and self.stop_reason == "output":
                    continue
                else:
                    self._store(fd, data)
        if self.ctl_server.fileno() >= 0:
            self.ctl_server.setblocking(False)
            while self.ctl_server.fileno() >= 0:
                before = len(self.events)
                self._read_control()
                if len(self.events) == before:
                    break

    def _close(self, fd: int) -> None:
        if fd in self.open_fds:
            self.open_fds.discard(fd)
            os.close(fd)

    def close_control(self) -> None:
        if self.mode == "call" and self.ctl_server.fileno() >= 0:
            self.ctl_server.close()

    def close_all(self) -> None:
        for fd in list(self.open_fds):
            self._close(fd)
        if self.ctl_server.fileno() >= 0:
            self.ctl_server.close()

    def result(self) -> dict[str, Any]:
        exit_code = signal_number = None
        max_rss = 0
        if self.candidate_status is not None:
            exit_code, signal_number = sysutil.describe_status(self.candidate_status[0])
            max_rss = self.candidate_status[2]
        return {
            "id": self.request.get("id"),
            "mode": self.mode,
            "exit_code": exit_code,
            "signal": signal_number,
            "killed_for": self.killed_for,
            "stop_reason": self.stop_reason,
            "cpu_s": round(self.cpu_s, 4),
            "wall_s": round(self.elapsed, 4),
            "max_rss_kb": max_rss,
            "stdout": base64.b64encode(bytes(self.stdout)).decode("ascii"),
            "stdout_bytes": self.stdout_bytes,
            "stderr": base64.b64encode(bytes(self.stderr)).decode("ascii"),
            "stderr_bytes": self.stderr_bytes,
            "events": self.events,
            "record": self.record,
            "kill_rounds": self.kill_rounds,
            "oom_first": self.oom_first,
            "protocol_violation": self.protocol_violation,
        }


def _sanitized(event: dict[str, Any]) -> dict[str, Any]:
    """Only the keys an event may have, texts cut: what the host gets is bounded whatever the
    program sent."""
    kept = {}
    for key in EVENT_KEYS:
        if key in event:
            value = event[key]
            kept[key] = value[:MAX_EVENT_TEXT] if key in EVENT_TEXTS and isinstance(value, str) else value
    return kept
