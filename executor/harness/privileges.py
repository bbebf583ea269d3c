"""Two users in one container: the harness and the programs it runs (PROGRAM_UID).

The container starts as root with only CAP_KILL, CAP_SETUID, CAP_SETGID and CAP_SETPCAP (the
host's ``cap_add``; everything else dropped, no-new-privileges, the project's seccomp profile).
PID 1 first forks the zygote, then becomes HARNESS_UID; each process keeps just what it needs:

    server (PID 1)  HARNESS_UID  CAP_KILL           kills the programs' processes after each job
    zygote          root         CAP_SETUID/SETGID  forks each program's process
    test runner     HARNESS_UID  none
    program         PROGRAM_UID  none

A child of the zygote gives up root with setresuid(PROGRAM_UID x 3) before any program code
runs; leaving uid 0 makes the kernel clear every capability it held (no keep-caps flag is ever
set), so no further call is needed. The zygote stays root because that is what CAP_SETUID
amounts to anyway (it may become any uid), and it lets that single call drop everything.
CAP_SETPCAP serves once, at start: the server and the zygote empty their capability bounding
sets, so every process forked later has an empty one too (it can gain nothing even by exec).

Guarantees: a program runs under another uid than every harness process and holds no
capability, so the kernel refuses it signals, ptrace and prlimit on harness processes (all need
the same uid or a capability), and it cannot read their /proc entries. Not guaranteed: anything
against a kernel exploit, and nothing at all outside a container started as root with these
capabilities (the process backend runs programs under the harness's own uid; the server then
reports ``uid_separated: false``).
"""

from __future__ import annotations

import ctypes
import os

HARNESS_UID = 65532
PROGRAM_UID = 65534  # nobody

CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
SERVER_CAPS = frozenset({CAP_KILL})
ZYGOTE_CAPS = frozenset({CAP_SETGID, CAP_SETUID})

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
OOM_SCORE_ADJ = b"1000"  # the OOM killer takes a program's process before any harness process


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def set_capabilities(caps: frozenset[int]) -> None:
    """capset(2): effective = permitted = ``caps``, inheritable empty (only ever lowers them)."""
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(mask, mask, 0), _CapData(0, 0, 0))
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def empty_bounding_set() -> None:
    """Drop every capability from this process's bounding set (needs CAP_SETPCAP); children
    inherit the empty set. Raises if the kernel refuses."""
    for cap in range(_last_capability() + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def can_separate() -> bool:
    """Whether this process (PID 1) is root, as a sandbox container starts it."""
    return os.getuid() == 0


def enter_zygote() -> None:
    """In the zygote, forked by PID 1 while still root: only CAP_SETUID/SETGID, no bounding set."""
    empty_bounding_set()
    set_capabilities(ZYGOTE_CAPS)


def become_harness() -> None:
    """In PID 1, started as root, after forking the zygote: HARNESS_UID with CAP_KILL only."""
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setresgid(HARNESS_UID, HARNESS_UID, HARNESS_UID)
    os.setresuid(HARNESS_UID, HARNESS_UID, HARNESS_UID)
    _check(_libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    set_capabilities(SERVER_CAPS | {CAP_SETPCAP})
    empty_bounding_set()
    set_capabilities(SERVER_CAPS)


def become_program() -> None:
    """In a child of the (root) zygote, before any program code: PROGRAM_UID, no capability.

    oom_score_adj is written first, while the file (of a non-dumpable process: root's) is still
    writable; the uid change from root then clears every capability in the same step."""
    raise_oom_score()
    os.setgroups([])
    os.setresgid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)
    os.setresuid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)


def raise_oom_score() -> None:
    """Make this process the OOM killer's first choice (raising it needs no privilege)."""
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    try:
        os.write(fd, OOM_SCORE_ADJ)
    finally:
        os.close(fd)


def drop_all() -> None:
    """Keep the uid, lose every capability (the test runner)."""
    set_capabilities(frozenset())
