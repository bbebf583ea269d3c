"""executor/sandbox/seccomp.py: the sandbox's allow-list, and its copy in deploy/."""

from __future__ import annotations

import json
from pathlib import Path

from executor.sandbox import seccomp

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "seccomp" / "coderl-sandbox.json"
# Calls no judged program needs and that widen the kernel surface or reach other processes.
NEVER_ALLOWED = {
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "io_setup", "io_submit", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "fanotify_init", "landlock_create_ruleset", "init_module", "finit_module", "kexec_load", "reboot",
    "swapon", "settimeofday", "clock_settime", "sethostname", "acct", "vmsplice", "modify_ldt",
    "open_by_handle_at", "name_to_handle_at", "quotactl", "syslog", "socket", "socketpair", "clone",
    "clone3", "personality",
}  # fmt: skip


def test_the_deployed_profile_is_the_generated_one() -> None:
    assert DEPLOYED.read_text() == seccomp.profile_json(), (
        "regenerate deploy/seccomp/coderl-sandbox.json (see executor/sandbox/seccomp.py)"
    )


def test_dangerous_calls_are_never_in_the_allow_list() -> None:
    assert not NEVER_ALLOWED & set(seccomp.allowed_syscalls())


def test_refused_calls_fail_with_eperm_and_clone3_with_enosys() -> None:
    profile = json.loads(seccomp.profile_json())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    (clone3,) = [r for r in profile["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert {a["architecture"] for a in profile["archMap"]} == {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"}
    assert all(not a["subArchitectures"] for a in profile["archMap"])  # no 32-bit system calls


def test_sockets_only_of_three_families_and_clone_without_namespaces() -> None:
    rules = seccomp.profile()["syscalls"]
    families = sorted(r["args"][0]["value"] for r in rules if r["names"] == ["socket"])
    assert families == [1, 2, 10]  # AF_UNIX, AF_INET, AF_INET6: no AF_VSOCK (40), netlink (16)...
    assert [r["args"][0]["value"] for r in rules if r["names"] == ["socketpair"]] == [1]
    (clone,) = [r for r in rules if r["names"] == ["clone"]]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    for rule in rules:
        for condition in rule.get("args", []):
            assert len(rule["args"]) == 1 and condition["index"] == 0
