"""Small Linux helpers for the harness: non-dumpable processes, /proc scans, cgroup counters."""

from __future__ import annotations

import os
import signal
import time

PR_SET_DUMPABLE = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): other processes of the same UID can no longer ptrace this one,
    read its memory or open its /proc/<pid>/fd entries. False if ctypes is unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except Exception:
        return False


PR_SET_CHILD_SUBREAPER = 36


def make_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


def list_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, the state, is index 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


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


def live_pids(exclude: set[int], session: int | None = None) -> list[int]:
    """Processes other than ourselves and ``exclude`` that are not zombies (of ``session`` only,
    if given)."""
    me, live = os.getpid(), []
    for pid in list_pids():
        if pid == me or pid in exclude:
            continue
        fields = proc_stat(pid)
        if fields is None or fields[0] == "Z":
            continue
        if session is not None and int(fields[3]) != session:
            continue
        live.append(pid)
    return live


def kill_all_except(keep: set[int], statuses: dict[int, tuple[int, float, int]], session: int | None) -> int:
    """SIGKILL every process but ``keep`` and ourselves until none is left; return rounds used.

    In a container (``session`` is None) this is every process of the container: daemons that
    called setsid() included. Outside one, only the given session's processes are reachable
    without harming the host, so escaped daemons survive (the weaker process backend).
    """
    for rounds in range(1, 500):
        live = live_pids(keep, session)
        if not live:
            reap_any(statuses)
            return rounds
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reap_any(statuses)
        if rounds > 3:
            time.sleep(0.001 * min(rounds, 20))
    return -1


def oom_kill_count() -> int | None:
    """The container cgroup's OOM-kill counter (cgroup v2 memory.events or v1 memory.oom_control)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def describe_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal number) of a wait status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


_SYSV_TABLES = (("shm", "shmctl"), ("msg", "msgctl"), ("sem", "semctl"))
IPC_RMID = 0


def remove_sysv_ipc() -> int:
    """Remove every System V shared-memory segment, message queue and semaphore set of this IPC
    namespace (they outlive the processes that made them: a side channel between runs).
    Returns how many could not be removed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        return 0
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
            if getattr(libc, remover)(*args) != 0:
                left += 1
    return left


def fingerprint(pid: int) -> tuple[str, str, str] | None:
    """Resource limits, nice value and CPU affinity of a process: a program with the same UID
    can lower the harness's limits (prlimit), renice it or pin it, so the server compares these
    after every job and reports a change as contamination."""
    try:
        with open(f"/proc/{pid}/limits") as handle:
            limits = handle.read()
        with open(f"/proc/{pid}/status") as handle:
            affinity = next((line for line in handle if line.startswith("Cpus_allowed_list")), "")
    except OSError:
        return None
    fields = proc_stat(pid)
    return limits, fields[16] if fields else "", affinity
