"""What a program may leave behind, how the server checks for it and how it is removed.

A program can write only to the container's tmpfs mounts (/tmp, /dev/shm, /dev/mqueue; the root
is read-only) and to System V IPC objects. Every program starts in the same working directory,
``/tmp/work``, owned by the program uid, empty, mode 0755. After each job the server, under the
harness uid, checks that nothing else exists (``leftovers``): listing these directories and
/proc/sysvipc needs no privilege. Only when something is left does it ask the zygote for a
janitor, a process under the *program* uid (the owner of everything a program can create, so
no capability to override permissions is needed) that removes it all and makes the working
directory again (``scrub``); a second check then decides whether the sandbox is contaminated.

Outside a container (the process backend) the same runs on the harness's own temporary root,
by the server itself.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass

from . import sysutil

WORK_NAME = "work"
WORK_MODE = 0o755
CONTAINED_SCRATCH = ("/tmp", "/dev/shm", "/dev/mqueue")


@dataclass(frozen=True)
class Layout:
    scratch_dirs: tuple[str, ...]
    """every directory a program may write to; emptied after each job but for the work dir"""
    workdir: str
    owner: int
    """uid that owns the work dir (the program uid)"""
    sysv_ipc: bool
    """whether System V IPC objects are this sandbox's own (a private IPC namespace)"""

    @classmethod
    def for_sandbox(cls, contained: bool, workroot: str, owner: int) -> Layout:
        scratch = CONTAINED_SCRATCH if contained else (workroot,)
        return cls(scratch, os.path.join(scratch[0], WORK_NAME), owner, contained)


def leftovers(layout: Layout) -> list[str]:
    """What a program left behind (empty when the sandbox is as a program found it)."""
    problems: list[str] = []
    parent = os.path.dirname(layout.workdir)
    for directory in layout.scratch_dirs:
        expected = [WORK_NAME] if directory == parent else []
        try:
            entries = sorted(os.listdir(directory))
        except OSError as exc:
            problems.append(f"{directory} unreadable: {exc.strerror}")
            continue
        if entries != expected:
            problems.append(f"{directory} holds {len(entries)} entries")
    try:
        info = os.lstat(layout.workdir)
        if (
            not stat.S_ISDIR(info.st_mode)
            or stat.S_IMODE(info.st_mode) != WORK_MODE
            or info.st_uid != layout.owner
        ):
            problems.append("the work directory was replaced or its mode changed")
        elif os.listdir(layout.workdir):
            problems.append("the work directory is not empty")
    except OSError as exc:
        problems.append(f"the work directory is unreadable: {exc.strerror}")
    if layout.sysv_ipc and sysutil.sysv_ipc_objects():
        problems.append("System V IPC objects are left")
    return problems


def scrub(layout: Layout) -> None:
    """Remove everything a program could have left and make the work directory again (run by the
    janitor under the program uid, or by the server outside a container)."""
    for directory in layout.scratch_dirs:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            _remove(os.path.join(directory, entry))
    if layout.sysv_ipc:
        sysutil.remove_sysv_ipc()
    os.mkdir(layout.workdir, WORK_MODE)
    os.chmod(layout.workdir, WORK_MODE)  # whatever the umask


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
