"""The zygote: a pristine interpreter, forked by the server before it has read any job, that
forks the processes that run programs (about a millisecond each instead of tens for a new
interpreter).

Because it never held job data, a candidate forked from it cannot find test code, expected
outputs or earlier programs in its inherited memory. It stays root with only CAP_SETUID/SETGID
(each child gives up root, and with it both, before anything else runs: see privileges.py) and
is non-dumpable, so a program (another uid) can neither signal, trace nor prlimit it.

Protocol on its SOCK_SEQPACKET socket (protocol.py): a ``ZygoteRequest`` (``ZygoteOp.RUN`` with 4
fds: stdin, stdout, stderr, control; or ``ZygoteOp.JANITOR``) -> ``{ZygoteReply.PID: pid}``; later
a ``ChildExit`` when that child is reaped. The server's end is links.ZygoteLink.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
from typing import NoReturn

from . import candidate, cleanup, privileges, sysutil
from .protocol import ChildExit, ZygoteOp, ZygoteReply, ZygoteRequest

PRELOAD = (
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "math",
    "re",
    "string",
    "fractions",
    "decimal",
    "random",
    "statistics",
    "typing",
    "copy",
    "operator",
    "json",
)


def preload(with_numpy: bool) -> None:
    """Import what programs commonly use, so forked candidates find it already loaded."""
    for name in PRELOAD:
        __import__(name)
    if with_numpy:
        try:
            __import__("numpy")
        except ImportError:
            pass


def main(sock: socket.socket, with_numpy: bool, separated: bool, layout: cleanup.Layout) -> NoReturn:
    sysutil.make_non_dumpable()
    sysutil.ignore_harness_signals()
    if separated:
        privileges.enter_zygote()
    preload(with_numpy)
    candidate.prepare_interpreter(layout.workdir)  # what every program starts with, made once
    gc.freeze()  # preloaded objects stay out of later collections: fewer copy-on-write faults
    sock.send(json.dumps({ZygoteReply.READY: True}).encode())
    statuses: dict[int, tuple[int, float, int]] = {}
    children: set[int] = set()
    # SIGCHLD writes a byte to this pipe, so a child's exit wakes the select at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    while True:
        readable, _, _ = select.select([sock, wake_r], [], [], 0.5)
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if sock in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
            except OSError:
                os._exit(0)
            if not data:
                os._exit(0)
            request = ZygoteRequest.from_dict(json.loads(data))
            pid = os.fork()
            if pid == 0:
                sock.close()
                sysutil.restore_program_signals()
                if request.op == ZygoteOp.JANITOR:
                    _janitor(separated, layout)
                candidate.start(request.limits or {}, fds, request.workdir or "", separated)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            sock.send(json.dumps({ZygoteReply.PID: pid}).encode())
        sysutil.reap_any(statuses)
        for pid in [pid for pid in statuses if pid in children]:
            status, cpu, rss = statuses.pop(pid)
            children.discard(pid)
            sock.send(json.dumps(ChildExit(pid, status, cpu, rss).to_dict()).encode())
        statuses.clear()


def _janitor(separated: bool, layout: cleanup.Layout) -> NoReturn:
    code = 1
    try:
        if separated:
            privileges.become_program()
        cleanup.scrub(layout)
        code = 0
    finally:
        os._exit(code)
