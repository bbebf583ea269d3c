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

import os
import select
import sys
import time
from typing import Any

from . import cleanup, privileges, runner, sysutil, wire
from .job import Job
from .links import RunnerLink, ZygoteLink
from .protocol import (
    InfoKey,
    Mode,
    Op,
    RequestKey,
    ResultKey,
    RunRequest,
    StopReason,
    ZygoteOp,
    ZygoteRequest,
)

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
        self.jobs_run = 0
        self.tasks = sysutil.cgroup_tasks() if contained else None
        # while still root: the zygote keeps root, see privileges.py
        self.zygote = ZygoteLink.start(with_numpy, self.separated, self.layout)
        if self.separated:
            privileges.become_harness()
        self.meter = sysutil.JobCpu(self.zygote.pid, contained)
        self.runner = RunnerLink.start()
        problems = self._scrub() or cleanup.leftovers(self.layout)
        if problems:
            raise RuntimeError(f"the sandbox is not clean at start: {problems}")
        self.expected_tasks = sysutil.task_count(self.harness_pids())
        self.fingerprints = {p: sysutil.fingerprint(p) for p in (os.getpid(), self.zygote.pid)}

    # --- the helper processes (links.py) -------------------------------------------------------
    def _settle_runner(self, job: Job) -> None:
        """After an assert job the runner must be idle again: wait briefly for its record (its
        candidate is dead, so the tests end at once), else replace it."""
        deadline = time.monotonic() + RUNNER_ANSWER_S
        while job.record is None and self.runner.alive and time.monotonic() < deadline:
            select.select([self.runner.sock], [], [], max(0.0, deadline - time.monotonic()))
            job.take_record()
        if job.record is None:
            self.runner.lose()
        self.runner.jobs += 1

    def harness_pids(self) -> list[int]:
        runner_pid = self.runner.pid
        return [os.getpid(), self.zygote.pid] + ([runner_pid] if runner_pid else [])

    # --- serving -------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                request = wire.read_frame(0)
            except wire.FrameError as exc:
                wire.write_frame(1, {InfoKey.ERROR: f"bad frame: {exc}"})
                return
            op = None if request is None else request.get(RequestKey.OP)
            if request is None or op == Op.EXIT:
                return
            if op == Op.PING:
                wire.write_frame(1, self.describe())
            elif op == Op.RUN:
                try:
                    reply = self.run(RunRequest.from_dict(request))
                except Exception as exc:  # a harness bug: say so, and let the host recycle us
                    failure = f"harness failure: {type(exc).__name__}: {exc}"[:2000]
                    wire.write_frame(1, {InfoKey.ERROR: failure})
                    return
                wire.write_frame(1, reply)
            else:
                wire.write_frame(1, {InfoKey.ERROR: f"unknown op {op!r}"})

    def describe(self) -> dict[str, Any]:
        return {
            InfoKey.PONG: True,
            InfoKey.CONTAINED: self.contained,
            InfoKey.UID_SEPARATED: self.separated,
            InfoKey.NON_DUMPABLE: self.non_dumpable,
            InfoKey.ZYGOTE_ALIVE: self.zygote.alive(),
            InfoKey.PYTHON: sys.version.split()[0],
            InfoKey.OOM_COUNTER: sysutil.oom_kill_count() is not None,
            InfoKey.CGROUP_CPU: self.meter.cgroup.available,
            InfoKey.CGROUP_TASKS: self.tasks is not None and self.tasks.available,
            InfoKey.JOBS_RUN: self.jobs_run,
        }

    def run(self, request: RunRequest) -> dict[str, Any]:
        self.jobs_run += 1
        oom_before = sysutil.oom_kill_count()
        job = Job(request, self.layout.workdir, self.jobs_run, self.zygote, self.runner)
        job.memory_before = sysutil.memory_exhaustion()
        self.meter.start()
        try:
            pid = self._spawn_candidate(job)
            if job.mode == Mode.ASSERT and not (self.runner.alive and job.hand_channel_to_runner()):
                self.runner.lose()
            job.loop(pid, self.meter)
        finally:
            job.stop_reason = job.stop_reason or StopReason.FINISHED
            if job.killed_for is None:
                self._let_candidate_exit(job)
            self._kill_everything(job)
            job.drain()
            self._await_candidate_status(job)
            if job.mode == Mode.ASSERT:
                self._settle_runner(job)
            job.cpu_s = max(self.meter.job_cpu_s(job.candidate_pid), (job.candidate_status or (0, 0.0, 0))[1])
            job.close_all()
        oom_after = sysutil.oom_kill_count()
        result = job.result()
        result[ResultKey.OOM_KILLED] = (
            oom_before is not None and oom_after is not None and oom_after > oom_before
        )
        try:
            result[ResultKey.CONTAMINATION] = self._after_job(job)
        except Exception as exc:  # cleanup must never take PID 1 down: report, get recycled
            result[ResultKey.CONTAMINATION] = [f"cleanup failed: {type(exc).__name__}: {exc}"[:500]]
        return result

    def _spawn_candidate(self, job: Job) -> int:
        request = ZygoteRequest(ZygoteOp.RUN, job.limits.to_dict(), job.workdir)
        pid = self.zygote.spawn(request, job.candidate_fds())
        job.close_candidate_ends()
        job.send_candidate_job()
        return pid

    def _let_candidate_exit(self, job: Job) -> None:
        """A candidate that answered exits by itself once its channel closes: cheaper than a kill."""
        job.close_control()
        self.zygote.wait_exit(job.candidate_pid, 0.02)

    def _kill_everything(self, job: Job) -> None:
        keep = set(self.harness_pids())
        if not self.contained:
            session = job.candidate_pid
            job.kill_rounds = sysutil.kill_sweep(
                keep, self.zygote.statuses, lambda: self._session_gone(session), session=session
            )
        elif self.tasks is not None and self.tasks.available:
            job.kill_rounds = sysutil.kill_sweep(keep, self.zygote.statuses, self._tasks_clean)
        else:
            job.kill_rounds = sysutil.kill_sweep(keep, self.zygote.statuses, lambda: self._others_gone(keep))

    def _tasks_clean(self) -> bool:
        """The kernel's count of the container's tasks is the harness's own: nothing else exists."""
        self.zygote.poll()  # the zygote reaps its dead children and tells us
        current = self.tasks.read() if self.tasks is not None else None
        if current == self.expected_tasks:
            return True
        self.expected_tasks = sysutil.task_count(self.harness_pids())
        return current == self.expected_tasks

    def _others_gone(self, keep: set[int]) -> bool:
        self.zygote.poll()
        me = os.getpid()
        return not any(sysutil.has_live_task(p) for p in sysutil.list_pids() if p != me and p not in keep)

    def _session_gone(self, session: int) -> bool:
        self.zygote.poll()
        return not any(sysutil.in_session(pid, session) for pid in sysutil.list_pids())

    def _await_candidate_status(self, job: Job) -> None:
        self.zygote.wait_exit(job.candidate_pid, 2.0)
        job.candidate_status = self.zygote.statuses.pop(job.candidate_pid, None)
        self.zygote.statuses.clear()  # orphans': the verdict needs only the candidate's

    # --- after a job ---------------------------------------------------------------------------
    def _after_job(self, job: Job) -> list[str]:
        problems: list[str] = []
        if job.kill_rounds < 0:
            problems.append("processes survived the kill sweep")
        if not self.zygote.alive():
            problems.append("zygote died or was stopped")
        for pid, before in self.fingerprints.items():
            if sysutil.fingerprint(pid) != before:
                problems.append(f"limits, priority, scheduling or affinity of harness process {pid} changed")
        link = self.runner
        if link.alive and job.mode == Mode.ASSERT:
            # The runner sets its own memory limit per job: compare with how the last job left it.
            now, memory = sysutil.fingerprint(link.pid or -1), job.limits.memory_bytes
            if now != link.fingerprint and memory == link.memory:
                link.lose()  # replaced below, whatever changed it
            link.fingerprint, link.memory = now, memory
        if not link.alive or link.jobs >= runner.MAX_JOBS:
            link.lose()
            sysutil.reap_any(self.zygote.statuses)
            self.runner = RunnerLink.start()
            self.expected_tasks = sysutil.task_count(self.harness_pids())
        if cleanup.leftovers(self.layout):
            problems += self._scrub() or cleanup.leftovers(self.layout)
        self.zygote.statuses.clear()
        return problems

    def _scrub(self) -> list[str]:
        """Remove what programs left: by a janitor under the program uid when uids are separated
        (it owns everything a program can create), else here. Problems if it failed."""
        if not self.separated:
            cleanup.scrub(self.layout)
            return []
        pid = self.zygote.spawn(ZygoteRequest(ZygoteOp.JANITOR), [])
        self.zygote.wait_exit(pid, JANITOR_TIMEOUT_S)
        status = self.zygote.statuses.pop(pid, None)
        if status is None or status[0] != 0:
            return ["the janitor failed"]
        return []


def main() -> None:
    contained = os.getpid() == 1
    workroot = os.environ.get("CODERL_WORKROOT") or "/tmp"
    with_numpy = os.environ.get("CODERL_PRELOAD_NUMPY", "0") == "1"
    server = Server(contained, workroot, with_numpy)
    wire.write_frame(1, {InfoKey.READY: True, **server.describe()})
    server.serve()


if __name__ == "__main__":
    main()
