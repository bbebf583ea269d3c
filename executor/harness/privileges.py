"""Two users in one container: the harness (HARNESS_UID) and the programs it runs (PROGRAM_UID).

The container starts as root with only CAP_KILL, CAP_SETUID, CAP_SETGID and CAP_SETPCAP (the
host's ``cap_add``; everything else dropped, no-new-privileges, the project's seccomp profile).
PID 1 becomes HARNESS_UID at once, keeping just the capabilities each harness process needs:

    server (PID 1)  HARNESS_UID  CAP_KILL                   kills the programs' processes after each job
    zygote          HARNESS_UID  CAP_SETUID/SETGID/SETPCAP  turns each forked child into PROGRAM_UID
    test runner     HARNESS_UID  none
    program         PROGRAM_UID  none, bounding set empty (before any program code runs)

Guarantees: a program runs under another uid than every harness process and holds no capability,
so the kernel refuses it signals, ptrace and prlimit on harness processes (all need the same uid
or a capability), and it cannot read their /proc entries. Not guaranteed: anything against a
kernel exploit, and nothing at all outside a container started as root with these capabilities
(the process backend runs programs under the harness's own uid; ``separated()`` reports False).
"""

from __future__ import annotations

import ctypes
import os

HARNESS_UID = 65532
PROGRAM_UID = 65534  # nobody

CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
HARNESS_CAPS = frozenset({CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP})
SERVER_CAPS = frozenset({CAP_KILL})
ZYGOTE_CAPS = frozenset({CAP_SETGID, CAP_SETUID, CAP_SETPCAP})

PR_SET_KEEPCAPS = 8
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


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


def capability_masks(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, as integers."""
    masks = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Cap"):
                key, _, value = line.partition(":")
                masks[key] = int(value.strip(), 16)
    return masks


def become_harness() -> bool:
    """In PID 1, started as root: switch to HARNESS_UID keeping HARNESS_CAPS. False (and nothing
    changed) when not root: the process backend, or an image started without ``user: 0``."""
    if os.getuid() != 0:
        return False
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setresgid(HARNESS_UID, HARNESS_UID, HARNESS_UID)
    os.setresuid(HARNESS_UID, HARNESS_UID, HARNESS_UID)
    _check(_libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    set_capabilities(HARNESS_CAPS)
    return True


def become_program() -> None:
    """In a child of the zygote, before any program code: PROGRAM_UID, no capabilities left.

    Changing credentials made the process non-dumpable (its /proc files root-owned); dumpable
    again, it may write its own /proc/self entries (oom_score_adj). Only its own uid's processes
    could then trace it, and those are the same program's."""
    for cap in range(_last_capability() + 1):  # needs CAP_SETPCAP, dropped just below
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    os.setgroups([])
    os.setresgid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)
    os.setresuid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)
    set_capabilities(frozenset())
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def drop_all() -> None:
    """Keep the uid, lose every capability (the test runner)."""
    set_capabilities(frozenset())
