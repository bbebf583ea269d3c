"""The sandbox's own seccomp profile: an allow-list of the system calls a judged Python program
and the harness need, everything else refused.

What it guarantees (on x86_64 and aarch64, with the native 64-bit ABI only: 32-bit and x32 system
calls are refused wholesale):
  - sockets only of the families AF_UNIX, AF_INET and AF_INET6 (``socket``/``socketpair``): no
    AF_VSOCK (not network-namespaced: on a VM host it reaches the hypervisor), no netlink (audit,
    kobject uevents, routing), no AF_PACKET, AF_ALG, Bluetooth, AF_KEY and the rest, whatever the
    container's network mode;
  - no new namespaces (``clone`` with namespace flags, ``unshare``, ``setns``; ``clone3`` answers
    ENOSYS, so C libraries fall back to the filtered ``clone``), no mount, no ptrace or
    cross-process memory access (``process_vm_*``, ``kcmp``, ``pidfd_getfd``), no io_uring, no
    Linux AIO, no BPF, perf events, userfaultfd, kernel keyrings, fanotify, landlock, module or
    kexec calls, no ``personality`` but the default and the query, no clock or host-name changes;
  - refused calls fail with EPERM, never kill the program (so its verdict is its own error);
    ``clone3`` fails with ENOSYS, which C libraries take for an older kernel and fall back to
    ``clone`` (EPERM would make every new thread fail).
What it does not guarantee: that the allowed calls are free of kernel bugs (the profile shrinks
the surface, it does not remove it), or anything on architectures other than the two above
(their programs get no system calls at all, since the profile lists no syscall for them).

``deploy/seccomp/coderl-sandbox.json`` is ``profile_json()`` written out (a test keeps them
equal), for ``docker run --security-opt seccomp=deploy/seccomp/coderl-sandbox.json`` by hand;
regenerate it with ``python3 -c "from executor.sandbox.seccomp import profile_json as p;
print(p(), end='')" > deploy/seccomp/coderl-sandbox.json``.
"""

from __future__ import annotations

import json
from typing import Any

EPERM, ENOSYS = 1, 38
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCKET_FAMILIES = (AF_UNIX, AF_INET, AF_INET6)
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: no namespace may be created.
CLONE_NAMESPACE_FLAGS = 0x7E020000
PERSONALITY_DEFAULT, PERSONALITY_QUERY = 0x0, 0xFFFFFFFF

ALLOWED = {
    "processes and threads": """
        fork vfork execve execveat exit exit_group wait4 waitid kill tkill tgkill
        pidfd_open pidfd_send_signal getpid getppid gettid getpgid setpgid getpgrp getsid setsid
        set_tid_address set_robust_list get_robust_list rseq futex futex_waitv futex_wait
        futex_wake futex_requeue membarrier sched_yield arch_prctl prctl restart_syscall""",
    "credentials and limits": """
        getuid geteuid getgid getegid getresuid getresgid getgroups setuid setgid setreuid
        setregid setresuid setresgid setgroups setfsuid setfsgid capget capset getrlimit
        setrlimit prlimit64 getrusage getpriority setpriority sched_getaffinity sched_setaffinity
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler sched_getattr
        sched_setattr sched_get_priority_max sched_get_priority_min sched_rr_get_interval
        ioprio_get ioprio_set umask""",
    "memory": """
        brk mmap munmap mremap mprotect madvise mincore msync mlock mlock2 munlock mlockall
        munlockall memfd_create pkey_alloc pkey_free pkey_mprotect get_mempolicy""",
    "signals and time": """
        rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait
        rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack pause alarm nanosleep clock_nanosleep
        clock_gettime clock_getres gettimeofday time times getitimer setitimer timer_create
        timer_delete timer_gettime timer_settime timer_getoverrun timerfd_create timerfd_gettime
        timerfd_settime signalfd signalfd4 eventfd eventfd2""",
    "files": """
        read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek open
        openat openat2 creat close close_range dup dup2 dup3 fcntl flock fsync fdatasync
        sync syncfs sync_file_range ftruncate truncate fallocate fadvise64 readahead
        stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 getdents
        getdents64 getcwd chdir fchdir mkdir mkdirat rmdir rename renameat renameat2 unlink
        unlinkat link linkat symlink symlinkat readlink readlinkat chmod fchmod fchmodat
        fchmodat2 chown fchown fchownat lchown utime utimes utimensat futimesat mknod mknodat
        getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr
        fsetxattr removexattr lremovexattr fremovexattr pipe pipe2 splice tee sendfile
        copy_file_range ioctl inotify_init inotify_init1 inotify_add_watch inotify_rm_watch""",
    "polling": """
        select pselect6 poll ppoll epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait
        epoll_pwait2""",
    "sockets (families filtered below)": """
        bind listen accept accept4 connect getsockname getpeername getsockopt setsockopt sendto
        recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown""",
    "System V and POSIX IPC (emptied after every job)": """
        shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl
        mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr""",
    "system information": "uname sysinfo getcpu getrandom",
}


def allowed_syscalls() -> list[str]:
    names = [name for group in ALLOWED.values() for name in group.split()]
    if len(names) != len(set(names)):
        raise ValueError("a system call is listed twice")
    return sorted(names)


def _only(name: str, index: int, values: tuple[int, ...]) -> list[dict[str, Any]]:
    """Allow ``name`` when its argument ``index`` is one of ``values`` (one rule each: a rule's
    conditions are ANDed)."""
    rules = []
    for value in values:
        condition = {"index": index, "value": value, "op": "SCMP_CMP_EQ"}
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [condition]})
    return rules


def profile() -> dict[str, Any]:
    """The profile in Docker's format (``security_opt=["seccomp=<this, as JSON>"]``)."""
    syscalls: list[dict[str, Any]] = [{"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"}]
    syscalls += _only("socket", 0, SOCKET_FAMILIES)
    syscalls += _only("socketpair", 0, (AF_UNIX,))
    syscalls += _only("personality", 0, (PERSONALITY_DEFAULT, PERSONALITY_QUERY))
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    syscalls.append(
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
        ],
        "syscalls": syscalls,
    }


def profile_json() -> str:
    return json.dumps(profile(), indent=1, sort_keys=True) + "\n"
