"""The sandbox server: PID 1 of a hardened container, one job at a time.

What it guarantees, given the container flags set by executor/sandbox/docker_pool.py (no
network, read-only root, tmpfs /tmp, all capabilities dropped, no-new-privileges, non-root
user, pids/memory/CPU limits, nothing mounted from the host):
  - every program runs in a fresh process forked from a zygote that never saw job data, in a
    fresh working directory, under RLIMIT_CPU/AS/FSIZE/NOFILE, with stdin closed at EOF;
  - wall-clock and CPU limits are enforced from this process (outside the program) by SIGKILL,
    and output is read concurrently and capped;
  - after each job every other process in the container except the zygote is killed (setsid
    daemons included: as PID 1 it sees the whole PID namespace), /tmp, /dev/shm and /dev/mqueue
    are emptied and checked, and anything left over is reported as contamination so the host
    recycles the container;
  - it is PID 1 (immune to SIGKILL from inside the container) and non-dumpable (the program,
    which has the same UID, cannot ptrace it or read its memory or file descriptors); expected
    outputs never enter the container, results are judged on the host.
What it does not guarantee: protection against kernel exploits (the container boundary is the
kernel's), or timing isolation from other containers on the host. Outside a container (the
opt-in process backend) it cannot kill daemons that leave the session and shares the host's
filesystem and network: that backend is weaker and says so.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import time
from typing import Any

from . import runner, sysutil, wire, zygote
from .job import Job

SCRUB_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
ZYGOTE_TIMEOUT_S = 20.0


class Server:
    def __init__(self, contained: bool, workroot: str, with_numpy: bool) -> None:
        self.contained, self.workroot, self.with_numpy = contained, workroot, with_numpy
        self.non_dumpable = sysutil.make_non_dumpable()
        sysutil.make_subreaper()  # outside a container, orphans must come to us, not the host's init
        self.statuses: dict[int, tuple[int, float, int]] = {}
        self.jobs_run = 0
        self._start_zygote()

    def _start_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _detach_from_host_channel()
            os.closerange(3, theirs.fileno())
            zygote.main(theirs, self.with_numpy)
        theirs.close()
        self.zygote_sock, self.zygote_pid, self.zygote_gone = ours, pid, False
        if self._zygote_message().get("ready") is not True:  # preloaded, so jobs are timed fairly
            raise RuntimeError("zygote did not start")
        # What a program could change in the harness's processes (same UID): checked after each job.
        self.fingerprints = {p: sysutil.fingerprint(p) for p in (os.getpid(), self.zygote_pid)}

    def _zygote_message(self) -> dict[str, Any]:
        """The zygote's next message; {} if it closed; RuntimeError if it does not answer in time
        (a program may have stopped it: the host then recycles this container)."""
        readable, _, _ = select.select([self.zygote_sock], [], [], ZYGOTE_TIMEOUT_S)
        if not readable:
            raise RuntimeError(f"zygote did not answer within {ZYGOTE_TIMEOUT_S} s")
        return json.loads(self.zygote_sock.recv(1 << 16) or b"{}")

    def zygote_stopped(self) -> bool:
        fields = sysutil.proc_stat(self.zygote_pid)
        return not self.zygote_gone and fields is not None and fields[0] in ("T", "t")

    def kill_zygote(self) -> None:
        """Orphans of a dead zygote become ours (PID 1, or a subreaper): their exits still arrive."""
        try:
            os.kill(self.zygote_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.zygote_gone = True

    def zygote_alive(self) -> bool:
        fields = sysutil.proc_stat(self.zygote_pid)
        return not self.zygote_gone and fields is not None and fields[0] not in ("Z", "X", "T", "t")

    def serve(self) -> None:
        while True:
            try:
                request = wire.read_frame(0)
            except wire.FrameError as exc:
                wire.write_frame(1, {"error": f"bad frame: {exc}"})
                return
            if request is None or request.get("op") == "exit":
                return
            if request.get("op") == "ping":
                wire.write_frame(1, self.describe())
            elif request.get("op") == "run":
                try:
                    reply = self.run(request)
                except Exception as exc:  # a harness bug: say so, and let the host recycle us
                    wire.write_frame(1, {"error": f"harness failure: {type(exc).__name__}: {exc}"[:2000]})
                    return
                wire.write_frame(1, reply)
            else:
                wire.write_frame(1, {"error": f"unknown op {request.get('op')!r}"})

    def describe(self) -> dict[str, Any]:
        return {
            "pong": True,
            "contained": self.contained,
            "non_dumpable": self.non_dumpable,
            "zygote_alive": self.zygote_alive(),
            "python": sys.version.split()[0],
            "oom_counter": sysutil.oom_kill_count() is not None,
            "jobs_run": self.jobs_run,
        }

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        self.jobs_run += 1
        oom_before = sysutil.oom_kill_count()
        workdir = os.path.join(self.workroot, f"w{self.jobs_run}")
        os.mkdir(workdir, 0o700)
        job = Job(request, workdir)
        try:
            pid = self._spawn_candidate(job)
            if job.mode == "assert":
                job.runner_pid = self._spawn_runner(job)
            job.loop(pid, self)
        finally:
            job.stop_reason = job.stop_reason or "finished"
            if job.killed_for is None:
                self._let_candidate_exit(job)
            self._kill_everything(job)
            job.drain()
            self._await_candidate_status(job)
            job.close_all()
        oom_after = sysutil.oom_kill_count()
        result = job.result()
        result["oom_killed"] = oom_before is not None and oom_after is not None and oom_after > oom_before
        try:
            result["contamination"] = self._scrub(workdir)
        except Exception as exc:  # cleanup must never take PID 1 down: report, get recycled
            result["contamination"] = [f"cleanup failed: {type(exc).__name__}: {exc}"[:500]]
        return result

    def _spawn_candidate(self, job: Job) -> int:
        request = json.dumps({"limits": job.limits, "workdir": job.workdir}).encode()
        socket.send_fds(self.zygote_sock, [request], job.candidate_fds())
        job.close_candidate_ends()
        while True:
            message = self._zygote_message()
            if "pid" in message:
                job.send_candidate_job()
                return int(message["pid"])
            if "exited" in message:
                self.statuses[int(message["exited"])] = (
                    message["status"],
                    message["cpu_s"],
                    message["max_rss_kb"],
                )
            if not message:
                raise RuntimeError("zygote is gone")

    def _spawn_runner(self, job: Job) -> int:
        control_fd, result_fd = job.runner_fds()
        pid = os.fork()
        if pid == 0:  # the child must never return into the server's code: it always _exits
            try:
                self._become_runner(job, control_fd, result_fd)
            finally:
                os._exit(70)
        job.close_runner_ends()
        return pid

    def _become_runner(self, job: Job, control_fd: int, result_fd: int) -> None:
        _detach_from_host_channel()  # test code that prints must not reach the host channel
        keep = sorted((control_fd, result_fd))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 16)
        memory = int(job.limits["memory_bytes"])
        runner.main(control_fd, result_fd, job.setup_code, job.test_code, job.entry_point, memory)

    def poll_zygote(self) -> None:
        while True:
            try:
                data = self.zygote_sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.zygote_gone = True
                return
            if not data:
                self.zygote_gone = True
                return
            message = json.loads(data)
            if "exited" in message:
                self.statuses[int(message["exited"])] = (
                    message["status"],
                    message["cpu_s"],
                    message["max_rss_kb"],
                )

    def _let_candidate_exit(self, job: Job) -> None:
        """A candidate that answered exits by itself once its channel closes: cheaper than a kill."""
        job.close_control()
        deadline = time.monotonic() + 0.02
        while job.candidate_pid not in self.statuses and time.monotonic() < deadline:
            self.poll_zygote()
            if job.candidate_pid not in self.statuses:
                select.select([self.zygote_sock], [], [], max(0.0, deadline - time.monotonic()))

    def _kill_everything(self, job: Job) -> None:
        session = None if self.contained else job.candidate_pid
        keep = {self.zygote_pid}
        job.kill_rounds = sysutil.kill_all_except(keep, self.statuses, session)

    def _await_candidate_status(self, job: Job) -> None:
        deadline = time.monotonic() + 2.0
        while job.candidate_pid not in self.statuses and time.monotonic() < deadline:
            self.poll_zygote()
            sysutil.reap_any(self.statuses)
            if job.candidate_pid not in self.statuses:
                time.sleep(0.0005)
        job.candidate_status = self.statuses.pop(job.candidate_pid, None)
        self.statuses.clear()  # the runner's status, orphans': the verdict needs only the candidate's

    def _scrub(self, workdir: str) -> list[str]:
        problems: list[str] = []
        if not self.zygote_alive():
            problems.append("zygote died or was stopped")
        for pid, before in self.fingerprints.items():
            if sysutil.fingerprint(pid) != before:
                problems.append(f"limits, priority or affinity of harness process {pid} changed")
        dirs = SCRUB_DIRS if self.contained else (workdir,)
        for directory in dirs:
            if not os.path.isdir(directory):
                continue
            for entry in os.listdir(directory):
                _remove(os.path.join(directory, entry))
            if os.listdir(directory):
                problems.append(f"{directory} not empty after cleanup")
        if not self.contained and os.path.exists(workdir):
            _remove(workdir)
        if self.contained:
            ipc_left = sysutil.remove_sysv_ipc()
            if ipc_left:
                problems.append(f"{ipc_left} System V IPC objects could not be removed")
            sysutil.reap_any(self.statuses)
            self.statuses.clear()
            leftover = sysutil.live_pids({self.zygote_pid})
            if leftover:
                problems.append(f"{len(leftover)} processes left")
        return problems


def _detach_from_host_channel() -> None:
    """Point fds 0 and 1 (the host channel, in the server) at /dev/null in a forked helper."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _make_removable(path: str, depth: int = 0) -> None:
    """chmod u+rwx every directory below ``path`` (a program may leave mode-000 ones); never
    follows symlinks. Depth-bounded: anything deeper is reported as not removable."""
    if depth > 200 or os.path.islink(path) or not os.path.isdir(path):
        return
    try:
        os.chmod(path, 0o700)
        entries = os.listdir(path)
    except OSError:
        return
    for entry in entries:
        _make_removable(os.path.join(path, entry), depth + 1)


def _remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    _make_removable(path)
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    contained = os.getpid() == 1
    workroot = os.environ.get("CODERL_WORKROOT") or "/tmp"
    with_numpy = os.environ.get("CODERL_PRELOAD_NUMPY", "1") == "1"
    server = Server(contained, workroot, with_numpy)
    wire.write_frame(1, {"ready": True, **server.describe()})
    server.serve()


if __name__ == "__main__":
    main()
