"""One job inside the server: the candidate's pipes, the event loop that enforces the limits,
and the raw result sent back to the host (which alone judges it)."""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import time
from typing import Any

from . import sysutil, wire
from .links import RunnerLink, ZygoteLink
from .protocol import (
    TERMINAL_EVENTS,
    CallOp,
    CallRequest,
    CandidateJob,
    Event,
    EventKey,
    JobLimits,
    KilledFor,
    Mode,
    ResultKey,
    RunnerJob,
    RunRequest,
    StopReason,
)

# What of an event the server keeps; its texts cut to MAX_EVENT_TEXT (a value never is).
EVENT_KEYS = (
    EventKey.EVENT,
    EventKey.TYPE,
    EventKey.BUILTIN,
    EventKey.MESSAGE,
    EventKey.TRACEBACK,
    EventKey.CODE,
    EventKey.VALUE,
)
EVENT_TEXTS = (EventKey.EVENT, EventKey.TYPE, EventKey.MESSAGE, EventKey.TRACEBACK)
MAX_EVENTS = 16
MAX_EVENT_TEXT = 4000
CPU_POLL_S = 0.01
EXPANSION = 5  # a JSON frame re-encodes to at most this many times its size (1e15 -> 1000000000000000.0)


class Job:
    """One run request. It reaches the zygote (its candidate's exit), the runner (assert mode) and
    the server's CPU meter only through the links and the meter it is given."""

    def __init__(
        self, request: RunRequest, workdir: str, seq: int, zygote: ZygoteLink, runner: RunnerLink
    ) -> None:
        self.mode = request.mode
        self.request, self.workdir, self.seq = request, workdir, seq
        self.zygote, self.runner = zygote, runner
        self.limits = JobLimits.from_dict(request.limits)
        self.output_cap = self.limits.output_bytes
        self.control_left = self.output_cap  # bytes of events, counted as they will be re-encoded
        self.stdin_data = memoryview((request.stdin or "").encode("utf-8", "surrogateescape"))
        self.stdout, self.stderr = bytearray(), bytearray()
        self.stdout_bytes = self.stderr_bytes = 0
        self.events: list[dict[str, Any]] = []
        self.record: dict[str, Any] | None = None
        self.stop_reason: StopReason | None = None
        self.killed_for: KilledFor | None = None
        self.candidate_pid = -1
        self.candidate_status: tuple[int, float, int] | None = None
        self.cpu_s = 0.0
        self.memory_before = 0
        self.oom_first = False  # memory ran out (limit reached, OOM kill) before a CPU or wall-clock kill
        self.kill_rounds = 0
        self.protocol_violation = False
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._exit_seen: float | None = None
        self._pending_call = self.mode == Mode.CALL
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
        if self.mode != Mode.STDIO:  # only stdio programs get input
            self._close(self.stdin_w)

    def send_candidate_job(self) -> None:
        request = self.request
        module_name = "__main__" if self.mode == Mode.STDIO else "solution"
        job = CandidateJob(request.mode, request.program, request.prelude, module_name)
        try:
            self.ctl_server.sendall(wire.encode_frame(job.to_dict()))
        except OSError:
            pass

    def hand_channel_to_runner(self) -> bool:
        """Assert mode: the runner, not the server, talks to the candidate. False if the runner
        could not take the job (it is then replaced and the tests count as not run)."""
        request = self.request
        job = RunnerJob(
            self.seq,
            request.setup_code or "",
            request.test_code or "",
            request.fn_name,
            self.limits.memory_bytes,
        )
        try:
            return self.runner.take_job(job, self.ctl_server.fileno())
        finally:
            self.ctl_server.close()

    # --- the loop ------------------------------------------------------------------------------
    def loop(self, candidate_pid: int, meter: sysutil.JobCpu) -> None:
        self.candidate_pid = candidate_pid
        self.started = time.monotonic()  # the clock starts when the program exists
        deadline = self.started + self.limits.wall_s
        next_cpu_check = 0.0
        if self.ctl_server.fileno() >= 0:
            self.ctl_server.setblocking(False)
        while self.stop_reason is None:
            now = time.monotonic()
            if now >= deadline:
                self._kill(KilledFor.WALL)
                break
            if now >= next_cpu_check:
                next_cpu_check = now + CPU_POLL_S
                if meter.job_cpu_s(candidate_pid) > self.limits.cpu_s:
                    self._kill(KilledFor.CPU)
                    break
            readers = [fd for fd in (self.out_r, self.err_r) if fd in self.open_fds]
            if self.ctl_server.fileno() >= 0:
                readers.append(self.ctl_server.fileno())
            if self.mode == Mode.ASSERT and self.runner.alive:
                readers.append(self.runner.fileno())
            if not self.zygote.gone:
                readers.append(self.zygote.fileno())
            writers = [self.stdin_w] if self.stdin_w in self.open_fds else []
            timeout = min(CPU_POLL_S, max(0.0, deadline - now))
            readable, writable, _ = select.select(readers, writers, [], timeout)
            if writable:
                self._feed_stdin()
            for fd in readable:
                self._read(fd)
            self._check_done()
        self.elapsed = time.monotonic() - self.started

    def _stop(self, reason: StopReason) -> None:
        self.stop_reason = reason

    def _kill(self, limit: KilledFor) -> None:
        """Stop for a limit (the server then kills everything); note whether memory ran out first."""
        self.stop_reason, self.killed_for = StopReason(limit), limit
        if limit in (KilledFor.CPU, KilledFor.WALL):
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

    def _read(self, fd: int) -> None:
        if fd == self.zygote.fileno():
            self.zygote.poll()
            return
        if fd == self.ctl_server.fileno():
            self._read_control()
            return
        if self.runner.alive and fd == self.runner.fileno():
            self.take_record()
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

    def take_record(self) -> None:
        """Read the runner's socket; keep this job's record (the runner lost: record stays None)."""
        record = self.runner.record_for(self.seq)
        if self.record is None:
            self.record = record

    def _store(self, fd: int, data: bytes) -> None:
        if fd == self.out_r:
            self.stdout_bytes += len(data)
            room = self.output_cap - len(self.stdout)
            self.stdout += data[: max(room, 0)]
            if self.stdout_bytes > self.output_cap and self.stop_reason is None:
                self._kill(KilledFor.OUTPUT)
        elif fd == self.err_r:
            self.stderr_bytes += len(data)
            self.stderr += data[: max(self.limits.stderr_keep_bytes - len(self.stderr), 0)]
            if self.stderr_bytes > self.output_cap and self.stop_reason is None:
                self._kill(KilledFor.OUTPUT)

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
            if self.mode == Mode.CALL and self.stop_reason is None:
                self._stop(StopReason.PROTOCOL_VIOLATION)
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
                self._kill(KilledFor.OUTPUT)
            return
        if len(self.events) < MAX_EVENTS:
            self.events.append(event)
        kind = event.get(EventKey.EVENT)
        if self.mode == Mode.CALL and kind == Event.READY and self._pending_call:
            self._pending_call = False
            call = CallRequest(CallOp.CALL, str(self.request.fn_name), self.request.args)
            try:
                self.ctl_server.setblocking(True)
                self.ctl_server.sendall(wire.encode_frame(call.to_dict()))
                self.ctl_server.setblocking(False)
            except OSError:
                pass
        elif self.mode == Mode.CALL and kind in TERMINAL_EVENTS and self.stop_reason is None:
            self._stop(StopReason.ANSWERED)

    def _check_done(self) -> None:
        if self.stop_reason is not None:
            return
        if self.mode == Mode.ASSERT:
            if self.record is not None:
                self._stop(StopReason.TESTS_FINISHED)
            elif not self.runner.alive:
                self._stop(StopReason.RUNNER_LOST)
            return
        statuses = self.zygote.statuses
        if self.candidate_pid not in statuses and self.zygote.stopped():
            self.zygote.kill()  # stopped by the program: its exit would never be reported
        sysutil.reap_any(statuses)  # the candidate is ours to reap if its zygote died
        if self.candidate_pid in statuses:
            # Give pipes a moment to reach EOF; daemons holding them are killed afterwards.
            if self.out_r in self.open_fds or self.err_r in self.open_fds:
                if self._exit_seen is None:
                    self._exit_seen = time.monotonic()
                if time.monotonic() - self._exit_seen < 0.05:
                    return
            self._stop(StopReason.EXITED)

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
                elif fd == self.out_r and self.stop_reason == StopReason.OUTPUT:
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
        if self.mode == Mode.CALL and self.ctl_server.fileno() >= 0:
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
            ResultKey.ID: self.request.id,
            ResultKey.MODE: self.mode,
            ResultKey.EXIT_CODE: exit_code,
            ResultKey.SIGNAL: signal_number,
            ResultKey.KILLED_FOR: self.killed_for,
            ResultKey.STOP_REASON: self.stop_reason,
            ResultKey.CPU_S: round(self.cpu_s, 4),
            ResultKey.WALL_S: round(self.elapsed, 4),
            ResultKey.MAX_RSS_KB: max_rss,
            ResultKey.STDOUT: base64.b64encode(bytes(self.stdout)).decode("ascii"),
            ResultKey.STDOUT_BYTES: self.stdout_bytes,
            ResultKey.STDERR: base64.b64encode(bytes(self.stderr)).decode("ascii"),
            ResultKey.STDERR_BYTES: self.stderr_bytes,
            ResultKey.EVENTS: self.events,
            ResultKey.RECORD: self.record,
            ResultKey.KILL_ROUNDS: self.kill_rounds,
            ResultKey.OOM_FIRST: self.oom_first,
            ResultKey.PROTOCOL_VIOLATION: self.protocol_violation,
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
