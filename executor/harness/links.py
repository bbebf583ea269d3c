"""The server's ends of its two helper processes: the zygote (``ZygoteLink``) and the assert-test
runner (``RunnerLink``). Each starts its process, owns the socket to it and knows whether it is
still there; the server holds one of each and hands them to every ``Job``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time
from typing import Any

from . import cleanup, runner, sysutil, wire, zygote
from .protocol import ChildExit, RecordKey, RunnerJob, ZygoteReply, ZygoteRequest

ZYGOTE_TIMEOUT_S = 20.0

ExitStatus = tuple[int, float, int]
"""(wait status, CPU seconds, max RSS kB), as sysutil.reap_any records it"""


class ZygoteLink:
    """The zygote's socket, whether the zygote is gone, and the exit statuses of the processes it
    forked (it reports them) or that became the server's to reap (orphans of a dead zygote)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock, self.pid, self.gone = sock, pid, False
        self.statuses: dict[int, ExitStatus] = {}

    @classmethod
    def start(cls, with_numpy: bool, separated: bool, layout: cleanup.Layout) -> ZygoteLink:
        """Fork the zygote and wait until it has preloaded (so jobs are timed fairly)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            detach_from_host_channel()
            os.closerange(3, theirs.fileno())
            zygote.main(theirs, with_numpy, separated, layout)
        theirs.close()
        link = cls(ours, pid)
        if link._message().get(ZygoteReply.READY) is not True:
            raise RuntimeError("zygote did not start")
        return link

    def fileno(self) -> int:
        return self.sock.fileno()

    def _message(self) -> dict[str, Any]:
        """The zygote's next message; {} if it closed; RuntimeError if it does not answer in time."""
        readable, _, _ = select.select([self.sock], [], [], ZYGOTE_TIMEOUT_S)
        if not readable:
            raise RuntimeError(f"zygote did not answer within {ZYGOTE_TIMEOUT_S} s")
        return json.loads(self.sock.recv(1 << 16) or b"{}")

    def _record_exit(self, message: dict[str, Any]) -> None:
        exit_ = ChildExit.from_dict(message)
        if exit_ is not None:
            self.statuses[exit_.pid] = (exit_.status, exit_.cpu_s, exit_.max_rss_kb)

    def poll(self) -> None:
        """Take the exits the zygote has reported, without waiting."""
        while True:
            try:
                data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.gone = True
                return
            if not data:
                self.gone = True
                return
            self._record_exit(json.loads(data))

    def spawn(self, request: ZygoteRequest, fds: list[int]) -> int:
        """A new child of the zygote (``fds`` passed to it); its pid."""
        socket.send_fds(self.sock, [json.dumps(request.to_dict()).encode()], fds)
        while True:
            message = self._message()
            if ZygoteReply.PID in message:
                return int(message[ZygoteReply.PID])
            if not message:
                raise RuntimeError("zygote is gone")
            self._record_exit(message)

    def wait_exit(self, pid: int, timeout_s: float) -> None:
        """Until ``pid``'s exit status is in ``statuses`` (reported by the zygote, or reaped here
        if it became our child) or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while pid not in self.statuses:
            self.poll()
            sysutil.reap_any(self.statuses)
            left = deadline - time.monotonic()
            if pid in self.statuses or left <= 0:
                return
            if self.gone:
                time.sleep(min(left, 0.0005))
            else:
                select.select([self.sock], [], [], left)

    def stopped(self) -> bool:
        fields = sysutil.proc_stat(self.pid)
        return not self.gone and fields is not None and fields[0] in ("T", "t")

    def kill(self) -> None:
        """Orphans of a dead zygote become ours (PID 1, or a subreaper): their exits still arrive."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.gone = True

    def alive(self) -> bool:
        fields = sysutil.proc_stat(self.pid)
        return not self.gone and fields is not None and fields[0] not in ("Z", "X", "T", "t")


class RunnerLink:
    """The test runner's socket and pid (None once lost), and what the server keeps about it."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock, self.jobs = sock, 0
        self.pid: int | None = pid
        self.frames = wire.FrameBuffer(1 << 20)
        self.fingerprint: tuple[object, ...] | None = None  # as its last job left it
        self.memory = -1  # the memory limit of its last job (it sets its own to twice that)

    @classmethod
    def start(cls) -> RunnerLink:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child must never return into the server's code: it always _exits
            try:
                ours.close()
                detach_from_host_channel()
                os.closerange(3, theirs.fileno())
                os.closerange(theirs.fileno() + 1, 1 << 16)
                runner.serve(theirs.fileno())
            finally:
                os._exit(70)
        theirs.close()
        ours.setblocking(False)
        return cls(ours, pid)

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def fileno(self) -> int:
        return self.sock.fileno()

    def take_job(self, job: RunnerJob, channel_fd: int) -> bool:
        """Hand the runner a job and the candidate's channel; False if it could not take them."""
        frame = wire.encode_frame(job.to_dict())
        try:
            socket.send_fds(self.sock, [frame[: wire.HEADER.size]], [channel_fd])
            self.sock.sendall(frame[wire.HEADER.size :])
        except OSError:
            return False
        return True

    def read(self) -> list[dict[str, Any]]:
        """Records the runner has sent; a runner that closed its socket or sent garbage is lost."""
        records: list[dict[str, Any]] = []
        while self.alive:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.lose()
                break
            try:
                records.extend(self.frames.feed(data))
            except wire.FrameError:
                self.lose()
        return records

    def record_for(self, seq: int) -> dict[str, Any] | None:
        """Read the socket; the first record for job ``seq`` among what came (others dropped)."""
        found = None
        for record in self.read():
            if record.get(RecordKey.SEQ) == seq and found is None:
                found = record
        return found

    def lose(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.sock.close()
        self.pid = None


def detach_from_host_channel() -> None:
    """Point fds 0 and 1 (the host channel, in the server) at /dev/null in a forked helper."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
