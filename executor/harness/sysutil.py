"""Small Linux helpers for the harness: /proc scans, the kill sweep, kernel counters of the
container's cgroup (tasks, CPU), process fingerprints."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import time
from collections.abc import Callable, Iterable

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)


# Signals harness processes ignore (a program cannot send them any: another uid; this is for
# signals from elsewhere). Programs must get the defaults back: a multiprocessing worker that
# ignored SIGTERM would never let Pool.terminate() return.
HARNESS_IGNORED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
)


def ignore_harness_signals() -> None:
    for number in HARNESS_IGNORED_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def restore_program_signals() -> None:
    """The dispositions a fresh Python interpreter has: defaults, KeyboardInterrupt on SIGINT."""
    signal.set_wakeup_fd(-1)
    for number in (*HARNESS_IGNORED_SIGNALS, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): other processes can no longer ptrace this one, read its memory
    or open its /proc/<pid>/fd entries."""
    return _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def make_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process."""
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def list_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, the state, is index 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def has_live_task(pid: int) -> bool:
    """Whether any thread of ``pid`` is alive. A thread group whose leader ended with the raw
    exit syscall shows the leader as a zombie while its other threads run: the leader's state
    alone says nothing."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        fields = proc_stat(f"{pid}/task/{tid}")
        if fields is not None and fields[0] not in ("Z", "X"):
            return True
    return False


def task_count(pids: Iterable[int]) -> int:
    """Threads of these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return total


def reap_any(statuses: dict[int, tuple[int, float, int]]) -> None:
    """Reap every exited child (PID 1 inherits orphans) and record (status, cpu s, max rss kB)."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = (status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


class CgroupFile:
    """One number from a file of the container's own cgroup (v1 or v2), re-read with pread.

    Inside a container the cgroup is the container's: every process a program starts is in it
    and cannot leave (moving needs write access to the cgroup tree, which is read-only there)."""

    def __init__(self, candidates: Iterable[tuple[str, str | None, int]]) -> None:
        self.fd: int | None = None
        for path, key, scale in candidates:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            self.fd, self.key, self.scale, self.path = fd, key, scale, path
            if self.read() is not None:
                return
            os.close(fd)
            self.fd = None

    @property
    def available(self) -> bool:
        return self.fd is not None

    def read(self) -> int | None:
        if self.fd is None:
            return None
        try:
            text = os.pread(self.fd, 4096, 0).decode("ascii", "replace")
        except OSError:
            return None
        if self.key is None:
            value = text.strip()
        else:
            value = next(
                (line.split()[1] for line in text.splitlines() if line.startswith(self.key + " ")), ""
            )
        return int(value) * self.scale if value.isdigit() else None


def cgroup_tasks() -> CgroupFile:
    """pids.current: every task (thread) of the container, zombies until reaped."""
    return CgroupFile(
        [("/sys/fs/cgroup/pids.current", None, 1), ("/sys/fs/cgroup/pids/pids.current", None, 1)]
    )


def cgroup_cpu_ns() -> CgroupFile:
    """CPU time of every process the container ever ran, in ns."""
    return CgroupFile(
        [
            ("/sys/fs/cgroup/cpu.stat", "usage_usec", 1000),
            ("/sys/fs/cgroup/cpuacct/cpuacct.usage", None, 1),
            ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", None, 1),
        ]
    )


class ProcessCpu:
    """CPU time of one live process in ns (/proc/<pid>/schedstat; 0 once it is gone)."""

    def __init__(self, pid: int) -> None:
        try:
            self.fd: int | None = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = None

    def read(self) -> int:
        if self.fd is None:
            return 0
        try:
            return int(os.pread(self.fd, 128, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class JobCpu:
    """CPU time of the running job: in a container, every process the container ran since
    ``start()`` (its cgroup's counter) minus the harness's server and zygote, so children,
    daemons and the test runner all count; outside one, the candidate's own and its reaped
    children's (a weaker count: processes that leave it escape)."""

    def __init__(self, zygote_pid: int, contained: bool) -> None:
        self.cgroup = cgroup_cpu_ns() if contained else CgroupFile([])
        self.zygote = ProcessCpu(zygote_pid)
        self.base = (0, 0, 0)

    def _now(self) -> tuple[int, int, int]:
        own = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)
        return self.cgroup.read() or 0, own, self.zygote.read()

    def start(self) -> None:
        self.base = self._now()

    def job_cpu_s(self, candidate_pid: int) -> float:
        if self.cgroup.available:
            (total, own, zyg), (total0, own0, zyg0) = self._now(), self.base
            return max(0, (total - total0) - (own - own0) - (zyg - zyg0)) / 1e9
        fields = proc_stat(candidate_pid)
        if fields is None:
            return 0.0
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def kill_sweep(
    keep: set[int],
    statuses: dict[int, tuple[int, float, int]],
    clean: Callable[[], bool],
    deadline_s: float = 2.0,
    session: int | None = None,
) -> int:
    """SIGKILL every process but ``keep`` and ourselves, whatever its state, reaping as we go,
    until ``clean()`` holds; return the rounds used, or -1 if it never did before the deadline.

    In a container (``session`` is None) this is every process of the container: daemons that
    called setsid() and thread groups whose leader is a zombie included. Outside one, only the
    given session's processes are reachable without harming the host, so escaped daemons survive
    (the weaker process backend)."""
    me, deadline = os.getpid(), time.monotonic() + deadline_s
    rounds = 0
    while True:
        rounds += 1
        for pid in list_pids():
            if pid == me or pid in keep:
                continue
            if session is not None and not in_session(pid, session):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reap_any(statuses)
        if clean():
            return rounds
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.0005 * min(rounds, 20))


def in_session(pid: int, session: int) -> bool:
    """Whether ``pid`` belongs to ``session`` and still has a live thread."""
    fields = proc_stat(pid)
    return fields is not None and fields[3] == str(session) and has_live_task(pid)


def _counter(path: str, key: str | None = None) -> int | None:
    """A number from a cgroup file: the whole file, or the value on its ``key value`` line."""
    try:
        with open(path) as handle:
            if key is None:
                return int(handle.read())
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def oom_kill_count() -> int | None:
    """The container cgroup's OOM-kill counter (cgroup v2 memory.events or v1 memory.oom_control)."""
    return _first(
        _counter("/sys/fs/cgroup/memory.events", "oom_kill"),
        _counter("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    )


def memory_limit_hits() -> int | None:
    """How often the container's memory reached its limit (v2 memory.events "max", v1
    memory.failcnt): the sign that a job ran out of memory, even before the OOM killer acts."""
    return _first(
        _counter("/sys/fs/cgroup/memory.events", "max"), _counter("/sys/fs/cgroup/memory/memory.failcnt")
    )


def memory_exhaustion() -> int:
    """OOM kills plus limit hits of the container so far (0 where neither counter exists)."""
    return (oom_kill_count() or 0) + (memory_limit_hits() or 0)


def describe_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal number) of a wait status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
IOPRIO_WHO_PROCESS = 1


def io_priority(pid: int) -> int | None:
    if _IOPRIO_GET is None:
        return None
    value = _libc.syscall(_IOPRIO_GET, IOPRIO_WHO_PROCESS, pid)
    return None if value < 0 else int(value)


def fingerprint(pid: int) -> tuple[object, ...] | None:
    """What another process could change about a harness process: resource limits, nice value,
    scheduling policy and priority, I/O priority, CPU affinity. The server compares these after
    every job and reports a change as contamination (programs run under another uid and cannot
    change them; this catches what that would miss)."""
    try:
        with open(f"/proc/{pid}/limits") as handle:
            limits = handle.read()
        affinity = tuple(sorted(os.sched_getaffinity(pid)))
        policy = os.sched_getscheduler(pid)
        priority = os.sched_getparam(pid).sched_priority
    except OSError:
        return None
    fields = proc_stat(pid)
    nice = fields[16] if fields else ""
    return limits, nice, policy, priority, io_priority(pid), affinity


_SYSV_TABLES = (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl"))
IPC_RMID = 0


def sysv_ipc_objects() -> int:
    """System V shared-memory segments, message queues and semaphore sets of this IPC namespace
    (they outlive the processes that made them: a side channel between runs)."""
    count = 0
    for table, _ in _SYSV_TABLES:
        try:
            with open(f"/proc/sysvipc/{table}") as handle:
                count += max(0, len(handle.read().splitlines()) - 1)
        except OSError:
            continue
    return count


def remove_sysv_ipc() -> int:
    """Remove every System V IPC object this process may remove; return how many are left."""
    left = 0
    for table, remover in _SYSV_TABLES:
        try:
            with open(f"/proc/sysvipc/{table}") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ident = int(row.split()[1])
            args = (ident, 0, IPC_RMID, None) if table == "sem" else (ident, IPC_RMID, None)
            if getattr(_libc, remover)(*args) != 0:
                left += 1
    return left
