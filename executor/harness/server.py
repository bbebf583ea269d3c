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
import socket
import sys
import time
from typing import Any

from . import runner, sysutil, wire, zygote
from .job import Job

SCRUB_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")


class Server:
    def __init__(self, contained: bool, workroot: str, with_numpy: bool) -> None:
        self.contained, self.workroot, self.with_numpy = contained, workroot, with_numpy
        self.non_dumpable = sysutil.make_non_dumpable()
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
        self.zygote_sock, self.zygote_pid = ours, pid

    def zygote_alive(self) -> bool:
        fields = sysutil.proc_stat(self.zygote_pid)
        return fields is not None and fields[0] not in ("Z", "X")

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
                wire.write_frame(1, self.run(request))
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
        result["contamination"] = self._scrub(workdir)
        return result

    def _spawn_candidate(self, job: Job) -> int:
        request = json.dumps({"limits": job.limits, "workdir": job.workdir}).encode()
        socket.send_fds(self.zygote_sock, [request], job.candidate_fds())
        job.close_candidate_ends()
        while True:
            message = json.loads(self.zygote_sock.recv(1 << 16) or b"{}")
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
        if pid == 0:
            _detach_from_host_channel()  # test code that prints must not reach the host channel
            keep = sorted((control_fd, result_fd))
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, 1 << 16)
            runner.main(control_fd, result_fd, job.setup_code, job.test_code)
        job.close_runner_ends()
        return pid

    def poll_zygote(self) -> None:
        while True:
            try:
                data = self.zygote_sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
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
        if job.runner_pid is not None:
            job.runner_status = self.statuses.pop(job.runner_pid, None)
        self.statuses.clear()

    def _scrub(self, workdir: str) -> list[str]:
        problems: list[str] = []
        if not self.zygote_alive():
            problems.append("zygote died")
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
            leftover = [
                pid
                for pid in sysutil.list_pids()
                if pid not in (os.getpid(), self.zygote_pid) and (sysutil.proc_stat(pid) or ["Z"])[0] != "Z"
            ]
            if leftover:
                problems.append(f"{len(leftover)} processes left")
        return problems


def _detach_from_host_channel() -> None:
    """Point fds 0 and 1 (the host channel, in the server) at /dev/null in a forked helper."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _remove(path: str) -> None:
    def make_writable_and_retry(function: Any, target: str, _: Any) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            if not os.path.islink(target):
                os.chmod(target, 0o700)
            function(target)
        except OSError:
            pass

    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    shutil.rmtree(path, onerror=make_writable_and_retry)


def main() -> None:
    contained = os.getpid() == 1
    workroot = os.environ.get("CODERL_WORKROOT") or "/tmp"
    with_numpy = os.environ.get("CODERL_PRELOAD_NUMPY", "1") == "1"
    server = Server(contained, workroot, with_numpy)
    wire.write_frame(1, {"ready": True, **server.describe()})
    server.serve()


if __name__ == "__main__":
    main()
