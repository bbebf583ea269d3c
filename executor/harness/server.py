"""The sandbox server: PID 1 of a hardened container, one job at a time.

What it guarantees, given the container flags set by executor/sandbox/connection.py (no
network, read-only root, tmpfs /tmp, started as root with only CAP_KILL/SETUID/SETGID,
no-new-privileges, the project's seccomp profile, pids/memory/CPU limits, nothing mounted from
the host):
  - programs run under another uid than every harness process and hold no capability
    (privileges.py): they cannot signal, trace or prlimit the server, the zygote or the test
    runner, nor read their memory or /proc entries;
  - every program runs in a fresh process forked from a zygote that never saw job data, in an
    emptied working directory, under RLIMIT_CPU/AS/FSIZE/NOFILE, with stdin closed at EOF;
  - wall-clock and CPU limits are enforced from this process (outside the program) by SIGKILL;
    the CPU limit counts every process of the job, children and daemons included (the container
    cgroup's CPU counter minus the harness's own), and output is read concurrently and capped,
    control messages included, in the bytes they take in the reply;
  - after each job every process of the container but the harness's is killed, whatever its
    state (setsid daemons, thread groups whose leader is a zombie), until the kernel's own task
    counter for the container (pids.current) equals the harness's tasks; /tmp, /dev/shm,
    /dev/mqueue and System V IPC are checked and emptied; anything left over, or any change to the
    harness processes' limits, priorities, scheduling or affinity, is reported as contamination
    so the host replaces the container;
  - it is PID 1 (immune to SIGKILL from inside the container), ignores SIGINT, and is
    non-dumpable; expected outputs never enter the container, results are judged on the host.
What it does not guarantee: protection against kernel exploits (the container boundary is the
kernel's), or timing isolation from other containers on the host. Outside a container (the
opt-in process backend) programs share the harness's uid, CPU is counted per process, daemons
that leave the session survive, and the host's filesystem and network are shared: that backend
is weaker and says so.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from . import cleanup, privileges, runner, sysutil, wire, zygote
from .job import Job

ZYGOTE_TIMEOUT_S = 20.0
RUNNER_ANSWER_S = 0.2
JANITOR_TIMEOUT_S = 5.0


class Server:
    def __init__(self, contained: bool, workroot: str, with_numpy: bool) -> None:
        self.contained, self.with_numpy = contained, with_numpy
        self.separated = contained and privileges.can_separate()
        self.non_dumpable = sysutil.make_non_dumpable()
        sysutil.make_subreaper()  # outside a container, orphans must come to us, not the host's init
        sysutil.ignore_harness_signals()
        owner = privileges.PROGRAM_UID if self.separated else os.getuid()
        self.layout = cleanup.Layout.for_sandbox(contained, workroot, owner)
        self.statuses: dict[int, tuple[int, float, int]] = {}
        self.jobs_run = 0
        self.tasks = sysutil.cgroup_tasks() if contained else None
        self._start_zygote()  # while still root: the zygote keeps root, see privileges.py
        if self.separated:
            privileges.become_harness()
        self.meter = sysutil.JobCpu(self.zygote_pid, contained)
        self.runner_pid: int | None = None
        self._start_runner()
        problems = self._scrub() or cleanup.leftovers(self.layout)
        if problems:
            raise RuntimeError(f"the sandbox is not clean at start: {problems}")
        self.expected_tasks = sysutil.task_count(self.harness_pids())
        self.fingerprints = {p: sysutil.fingerprint(p) for p in (os.getpid(), self.zygote_pid)}

    # --- the zygote -------------------------------------------------------------------------
    def _start_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _detach_from_host_channel()
            os.closerange(3, theirs.fileno())
            zygote.main(theirs, self.with_numpy, self.separated, self.layout)
        theirs.close()
        self.zygote_sock, self.zygote_pid, self.zygote_gone = ours, pid, False
        if self._zygote_message().get("ready") is not True:  # preloaded, so jobs are timed fairly
            raise RuntimeError("zygote did not start")

    def _zygote_message(self) -> dict[str, Any]:
        """The zygote's next message; {} if it closed; RuntimeError if it does not answer in time."""
        readable, _, _ = select.select([self.zygote_sock], [], [], ZYGOTE_TIMEOUT_S)
        if not readable:
            raise RuntimeError(f"zygote did not answer within {ZYGOTE_TIMEOUT_S} s")
        return json.loads(self.zygote_sock.recv(1 << 16) or b"{}")

    def _record_exit(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            self.statuses[int(message["exited"])] = (
                message["status"],
                message["cpu_s"],
                message["max_rss_kb"],
            )

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
            self._record_exit(json.loads(data))

    def _zygote_child(self, request: dict[str, Any], fds: list[int]) -> int:
        socket.send_fds(self.zygote_sock, [json.dumps(request).encode()], fds)
        while True:
            message = self._zygote_message()
            if "pid" in message:
                return int(message["pid"])
            if not message:
                raise RuntimeError("zygote is gone")
            self._record_exit(message)

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

    # --- the test runner ----------------------------------------------------------------------
    def _start_runner(self) -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child must never return into the server's code: it always _exits
            try:
                ours.close()
                _detach_from_host_channel()
                os.closerange(3, theirs.fileno())
                os.closerange(theirs.fileno() + 1, 1 << 16)
                runner.serve(theirs.fileno())
            finally:
                os._exit(70)
        theirs.close()
        ours.setblocking(False)
        self.runner_sock, self.runner_pid, self.runner_jobs = ours, pid, 0
        self.runner_frames = wire.FrameBuffer(1 << 20)
        self.runner_fingerprint: tuple[object, ...] | None = None  # as its last job left it
        self.runner_memory = -1  # the memory limit of its last job (it sets its own to twice that)

    @property
    def runner_alive(self) -> bool:
        return self.runner_pid is not None

    def read_runner(self) -> list[dict[str, Any]]:
        """Records the runner has sent; a runner that closed its socket or sent garbage is lost."""
        records: list[dict[str, Any]] = []
        while self.runner_alive:
            try:
                data = self.runner_sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self._lose_runner()
                break
            try:
                records.extend(self.runner_frames.feed(data))
            except wire.FrameError:
                self._lose_runner()
        return records

    def _lose_runner(self) -> None:
        if self.runner_pid is None:
            return
        try:
            os.kill(self.runner_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.runner_sock.close()
        self.runner_pid = None

    def _settle_runner(self, job: Job) -> None:
        """After an assert job the runner must be idle again: wait briefly for its record (its
        candidate is dead, so the tests end at once), else replace it."""
        deadline = time.monotonic() + RUNNER_ANSWER_S
        while job.record is None and self.runner_alive and time.monotonic() < deadline:
            select.select([self.runner_sock], [], [], max(0.0, deadline - time.monotonic()))
            job.take_record(self)
        if job.record is None:
            self._lose_runner()
        self.runner_jobs += 1

    def harness_pids(self) -> list[int]:
        return [os.getpid(), self.zygote_pid] + ([self.runner_pid] if self.runner_pid else [])

    # --- serving -------------------------------------------------------------------------------
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
            "uid_separated": self.separated,
            "non_dumpable": self.non_dumpable,
            "zygote_alive": self.zygote_alive(),
            "python": sys.version.split()[0],
            "oom_counter": sysutil.oom_kill_count() is not None,
            "cgroup_cpu": self.meter.cgroup.available,
            "cgroup_tasks": self.tasks is not None and self.tasks.available,
            "jobs_run": self.jobs_run,
        }

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        self.jobs_run += 1
        oom_before = sysutil.oom_kill_count()
        job = Job(request, self.layout.workdir, self.jobs_run)
        job.memory_before = sysutil.memory_exhaustion()
        self.meter.start()
        try:
            pid = self._spawn_candidate(job)
            if job.mode == "assert" and not (
                self.runner_alive and job.hand_channel_to_runner(self.runner_sock)
            ):
                self._lose_runner()
            job.loop(pid, self)
        finally:
            job.stop_reason = job.stop_reason or "finished"
            if job.killed_for is None:
                self._let_candidate_exit(job)
            self._kill_everything(job)
            job.drain()
            self._await_candidate_status(job)
            if job.mode == "assert":
                self._settle_runner(job)
            job.cpu_s = max(self.meter.job_cpu_s(job.candidate_pid), (job.candidate_status or (0, 0.0, 0))[1])
            job.close_all()
        oom_after = sysutil.oom_kill_count()
        result = job.result()
        result["oom_killed"] = oom_before is not None and oom_after is not None and oom_after > oom_before
        try:
            result["contamination"] = self._after_job(job)
        except Exception as exc:  # cleanup must never take PID 1 down: report, get recycled
            result["contamination"] = [f"cleanup failed: {type(exc).__name__}: {exc}"[:500]]
        return result

    def _spawn_candidate(self, job: Job) -> int:
        request = {"op": "run", "limits": job.limits, "workdir": job.workdir}
        pid = self._zygote_child(request, job.candidate_fds())
        job.close_candidate_ends()
        job.send_candidate_job()
        return pid

    def _wait_exit(self, pid: int, timeout_s: float) -> None:
        """Until ``pid``'s exit status is in ``statuses`` (reported by the zygote, or reaped here
        if it became our child) or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while pid not in self.statuses:
            self.poll_zygote()
            sysutil.reap_any(self.statuses)
            left = deadline - time.monotonic()
            if pid in self.statuses or left <= 0:
                return
            if self.zygote_gone:
                time.sleep(min(left, 0.0005))
            else:
                select.select([self.zygote_sock], [], [], left)

    def _let_candidate_exit(self, job: Job) -> None:
        """A candidate that answered exits by itself once its channel closes: cheaper than a kill."""
        job.close_control()
        self._wait_exit(job.candidate_pid, 0.02)

    def _kill_everything(self, job: Job) -> None:
        keep = set(self.harness_pids())
        if not self.contained:
            session = job.candidate_pid
            job.kill_rounds = sysutil.kill_sweep(
                keep, self.statuses, lambda: self._session_gone(session), session=session
            )
        elif self.tasks is not None and self.tasks.available:
            job.kill_rounds = sysutil.kill_sweep(keep, self.statuses, self._tasks_clean)
        else:
            job.kill_rounds = sysutil.kill_sweep(keep, self.statuses, lambda: self._others_gone(keep))

    def _tasks_clean(self) -> bool:
        """The kernel's count of the container's tasks is the harness's own: nothing else exists."""
        self.poll_zygote()  # the zygote reaps its dead children and tells us
        current = self.tasks.read() if self.tasks is not None else None
        if current == self.expected_tasks:
            return True
        self.expected_tasks = sysutil.task_count(self.harness_pids())
        return current == self.expected_tasks

    def _others_gone(self, keep: set[int]) -> bool:
        self.poll_zygote()
        me = os.getpid()
        return not any(sysutil.has_live_task(p) for p in sysutil.list_pids() if p != me and p not in keep)

    def _session_gone(self, session: int) -> bool:
        self.poll_zygote()
        return not any(sysutil.in_session(pid, session) for pid in sysutil.list_pids())

    def _await_candidate_status(self, job: Job) -> None:
        self._wait_exit(job.candidate_pid, 2.0)
        job.candidate_status = self.statuses.pop(job.candidate_pid, None)
        self.statuses.clear()  # orphans': the verdict needs only the candidate's

    # --- after a job ---------------------------------------------------------------------------
    def _after_job(self, job: Job) -> list[str]:
        problems: list[str] = []
        if job.kill_rounds < 0:
            problems.append("processes survived the kill sweep")
        if not self.zygote_alive():
            problems.append("zygote died or was stopped")
        for pid, before in self.fingerprints.items():
            if sysutil.fingerprint(pid) != before:
                problems.append(f"limits, priority, scheduling or affinity of harness process {pid} changed")
        if self.runner_alive and job.mode == "assert":
            # The runner sets its own memory limit per job: compare with how the last job left it.
            now, memory = sysutil.fingerprint(self.runner_pid), job.limits["memory_bytes"]
            if now != self.runner_fingerprint and memory == self.runner_memory:
                self._lose_runner()  # replaced below, whatever changed it
            self.runner_fingerprint, self.runner_memory = now, memory
        if not self.runner_alive or self.runner_jobs >= runner.MAX_JOBS:
            self._lose_runner()
            sysutil.reap_any(self.statuses)
            self._start_runner()
            self.expected_tasks = sysutil.task_count(self.harness_pids())
        if cleanup.leftovers(self.layout):
            problems += self._scrub() or cleanup.leftovers(self.layout)
        self.statuses.clear()
        return problems

    def _scrub(self) -> list[str]:
        """Remove what programs left: by a janitor under the program uid when uids are separated
        (it owns everything a program can create), else here. Problems if it failed."""
        if not self.separated:
            cleanup.scrub(self.layout)
            return []
        pid = self._zygote_child({"op": "janitor"}, [])
        self._wait_exit(pid, JANITOR_TIMEOUT_S)
        status = self.statuses.pop(pid, None)
        if status is None or status[0] != 0:
            return ["the janitor failed"]
        return []


def _detach_from_host_channel() -> None:
    """Point fds 0 and 1 (the host channel, in the server) at /dev/null in a forked helper."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def main() -> None:
    contained = os.getpid() == 1
    workroot = os.environ.get("CODERL_WORKROOT") or "/tmp"
    with_numpy = os.environ.get("CODERL_PRELOAD_NUMPY", "0") == "1"
    server = Server(contained, workroot, with_numpy)
    wire.write_frame(1, {"ready": True, **server.describe()})
    server.serve()


if __name__ == "__main__":
    main()
