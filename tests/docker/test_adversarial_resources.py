"""Adversarial corpus A1-A18 (sandboxes.md section 4.A): resource exhaustion and liveness.

Each test asserts the verdict the table requires (membership where it allows two) and the "must
also" invariants that can be observed from the host: timing against the limits, processes left
in the sandboxes (docker top from the host and /proc from inside), files left in /tmp, the test
process's own RSS, and that the executor keeps serving correct verdicts afterwards.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time

import pytest
from adversarial_corpus import ADD, SUM, SUM_OK

from coderl.outcomes import Verdict
from executor import ExecutionItem
from problems import Problem, TestCase

pytestmark = pytest.mark.docker

V = Verdict
NO_INPUT = Problem(
    task_id="no-input", statement="", hidden_tests=[TestCase(kind="stdio", stdin="", stdout="3\n")]
)
CLEAN = Problem(
    task_id="clean", statement="", hidden_tests=[TestCase(kind="stdio", stdin="", stdout="clean\n")]
)
KILL_SLACK_S = 0.75  # how far past a limit a kill may land (10 ms polls, container CPU quota)
# CPU-time kills are checked on CPU time: on a loaded host (other jobs, 2 vCPUs) 1 s of CPU can
# take longer than 1 s of wall time, which the wall limit (3 s) then bounds.

# Prints "clean" when /tmp holds only this run's working directory, /dev/shm is empty and the
# tmpfs is (almost) empty: nothing written by an earlier run survived.
CHECK_CLEAN = """\
import os, shutil
mine = os.path.basename(os.getcwd())
left = sorted(set(os.listdir('/tmp')) - {mine}) + sorted(os.listdir('/dev/shm'))
used = shutil.disk_usage('/tmp').used
print('clean' if not left and used < (1 << 20) else f'dirty:{left[:5]}:{used}')
"""


def host_process_count() -> int:
    return sum(name.isdigit() for name in os.listdir("/proc"))


def test_a1_busy_loop_is_cpu_timeout(executor, still_serving):
    res = executor.execute(SUM, "while True:\n    pass\n")
    assert res.verdict == V.TIMEOUT, res
    cpu = executor.limits["cpu_s"]
    assert res.tests[0].time_s <= cpu + KILL_SLACK_S, res.tests[0]
    if "CPU" in res.error.message:  # else the host was so loaded that the wall limit came first
        # rusage and the kernel's RLIMIT_CPU clock disagree by up to ~20 % on a loaded host
        assert res.tests[0].time_s >= cpu * 0.7, res.tests[0]
    assert res.tests[0].wall_s <= executor.limits["wall_s"] + KILL_SLACK_S, res.tests[0]
    still_serving(executor)


def test_a2_harness_start_up_is_not_charged_to_the_first_program(make_executor):
    # The wall clock of a run must measure the program, not the sandbox getting ready: the
    # first run in a fresh sandbox should take about as long as the next one.
    with make_executor(workers=1) as ex:
        first, second = ex.execute(SUM, SUM_OK), ex.execute(SUM, SUM_OK)
    assert first.verdict == second.verdict == V.PASSED, (first, second)
    assert first.tests[0].wall_s <= second.tests[0].wall_s + 0.05, (first.tests[0], second.tests[0])


def test_a2_sleep_hits_the_wall_limit(executor):
    started = time.monotonic()
    res = executor.execute(SUM, "import time\ntime.sleep(10**6)\n")
    elapsed = time.monotonic() - started
    wall = executor.limits["wall_s"]
    assert res.verdict == V.TIMEOUT, res
    assert "wall-clock" in res.error.message, res.error
    assert res.tests[0].time_s < 0.5, res.tests[0]
    assert wall - 0.1 <= res.tests[0].wall_s <= wall + KILL_SLACK_S, res.tests[0]
    assert elapsed <= wall + 2.0, elapsed


FORK_BOMBS = {
    "plain": "import os\nwhile True:\n    os.fork()\n",
    "catches-EAGAIN": "import os\nwhile True:\n    try:\n        os.fork()\n"
    "    except OSError:\n        pass\n",
}


@pytest.mark.parametrize("program", FORK_BOMBS.values(), ids=FORK_BOMBS.keys())
def test_a3_fork_bomb(executor, program, still_serving, no_leftover_processes):
    before = host_process_count()
    items = [ExecutionItem(SUM, program)] + [ExecutionItem(SUM, SUM_OK) for _ in range(6)]
    started = time.monotonic()
    results = executor.execute_many(items)
    assert results[0].verdict in {V.TIMEOUT, V.RUNTIME_ERROR}, results[0]
    # other sandboxes (and later jobs in the bombed one) are unaffected
    assert [r.verdict for r in results[1:]] == [V.PASSED] * 6, results[1:]
    assert time.monotonic() - started < executor.limits["wall_s"] + 10
    assert host_process_count() - before < 16, "fork bomb processes leaked to the host"
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork
    no_leftover_processes(executor)
    still_serving(executor)


THREADS = {
    "sleeping": "import threading, time\nfor _ in range(10000):\n"
    "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\nprint(3)\n",
    "busy": "import threading\ndef spin():\n    while True:\n        pass\nfor _ in range(10000):\n"
    "    threading.Thread(target=spin, daemon=True).start()\nprint(3)\n",
}


@pytest.mark.parametrize("program", THREADS.values(), ids=THREADS.keys())
def test_a4_ten_thousand_threads(executor, program, no_leftover_processes):
    res = executor.execute(SUM, program)
    assert res.verdict in {V.RUNTIME_ERROR, V.TIMEOUT}, res
    if res.verdict == V.RUNTIME_ERROR:  # the pids cap stopped it
        assert res.error.type == "RuntimeError" and "thread" in res.error.message, res.error
    no_leftover_processes(executor)


MEMORY_HOGS = {
    "bytearray-10GiB": "x = bytearray(10 * 1024**3)\nprint(3)\n",
    "str-10G": "x = ' ' * 10**10\nprint(3)\n",
    # each child stays under RLIMIT_AS; together they exceed the 512 MiB container: the cgroup
    # cap must count the whole tree.
    "forked-tree": "import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
    "        data = b'x' * (180 << 20)\n        time.sleep(100)\n"
    "os.wait()  # the first child to die: the OOM killer's victim\nprint(3)\n",
}


@pytest.mark.parametrize("program", MEMORY_HOGS.values(), ids=MEMORY_HOGS.keys())
def test_a5_memory_limit(executor, program, still_serving):
    res = executor.execute(SUM, program)
    if program == MEMORY_HOGS["forked-tree"] and res.verdict == V.TIMEOUT:
        # The CPU limit counts every process of the job: on a loaded host the four children's
        # page faults can use up the 1 s before the container's memory is exhausted. Same class.
        assert res.tests[0].time_s >= executor.limits["cpu_s"], res
    else:
        assert res.verdict == V.MEMORY_LIMIT, res
    still_serving(executor)


def test_a6_slowly_growing_list(executor, still_serving):
    program = "import time\nx = []\nwhile True:\n    x.append(bytearray(1 << 20))\n    time.sleep(0.0005)\n"
    res = executor.execute(SUM, program)
    assert res.verdict == V.MEMORY_LIMIT, res
    still_serving(executor)


STDOUT_FLOODS = {
    "A7-print": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
    "A9-os.write": "import os\nchunk = b'x' * (1 << 20)\nfor _ in range(1024):\n    os.write(1, chunk)\n",
    "A9-buffer": "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(1024):\n"
    "    sys.stdout.buffer.write(chunk)\n",
    "A7-print-lines": "while True:\n    print('y' * 1000)\n",
}


@pytest.mark.parametrize("program", STDOUT_FLOODS.values(), ids=STDOUT_FLOODS.keys())
def test_a7_a9_stdout_flood_is_output_limit(executor, program, still_serving):
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    res = executor.execute(SUM, program)
    elapsed = time.monotonic() - started
    assert res.verdict == V.OUTPUT_LIMIT, res
    assert elapsed < executor.limits["wall_s"], f"killing at the cap took {elapsed:.2f} s"
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rss_after_kb - rss_before_kb < 64 * 1024, (rss_before_kb, rss_after_kb)
    assert rss_after_kb < 1024 * 1024, f"executor process peaked at {rss_after_kb} kB"
    still_serving(executor)


def test_a8_stderr_flood_is_capped(executor):
    program = "import sys\nchunk = 'e' * (1 << 20)\nfor _ in range(1024):\n    sys.stderr.write(chunk)\n"
    started = time.monotonic()
    res = executor.execute(SUM, program)
    assert res.verdict in {V.OUTPUT_LIMIT, V.RUNTIME_ERROR}, res
    assert time.monotonic() - started < executor.limits["wall_s"]


def test_a8_stderr_and_stdout_are_capped_independently(executor):
    # 0.75 MiB on each stream: under the 1 MiB cap each, over it together.
    program = (
        "import sys\nsys.stderr.write('e' * (3 << 18))\nsys.stdout.write('3\\n' + ' ' * (3 << 18) + '\\n')\n"
    )
    res = executor.execute(SUM, program)
    assert res.verdict == V.PASSED, res


DISK_FILLERS = {
    "fill-tmp": "import os\nchunk = b'x' * (4 << 20)\nfor i in range(10**6):\n"
    "    with open(f'/tmp/fill{i}', 'wb') as f:\n        f.write(chunk)\n",
    "10GB-file": "with open('big.bin', 'wb') as f:\n    for _ in range(10 * 1024):\n"
    "        f.write(b'x' * (1 << 20))\n",
    "dev-shm": "chunk = b'x' * (4 << 20)\nfor i in range(10**6):\n"
    "    with open(f'/dev/shm/fill{i}', 'wb') as f:\n        f.write(chunk)\n",
}


@pytest.mark.parametrize("program", DISK_FILLERS.values(), ids=DISK_FILLERS.keys())
def test_a10_filling_the_disk(executor, program, on_every_sandbox, still_serving):
    res = executor.execute(SUM, program)
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type == "OSError", res.error
    checks = on_every_sandbox(executor, CLEAN, CHECK_CLEAN)
    assert [r.verdict for r in checks] == [V.PASSED] * len(checks), [(r.verdict, r.error) for r in checks]
    still_serving(executor)


DESCRIPTOR_HOGS = {
    "files": "handles = [open('/dev/null') for _ in range(10**6)]\nprint(3)\n",
    "sockets": "import socket\nsocks = [socket.socket() for _ in range(10**6)]\nprint(3)\n",
    "pipes": "import os\nfds = [os.pipe() for _ in range(10**6)]\nprint(3)\n",
}


@pytest.mark.parametrize("program", DESCRIPTOR_HOGS.values(), ids=DESCRIPTOR_HOGS.keys())
def test_a11_descriptor_exhaustion(executor, program):
    res = executor.execute(SUM, program)
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type == "OSError" and "Too many open files" in res.error.message, res.error


# Group 1 never checks for signals (an in-process alarm would not fire, sandboxes.md 3.5); group
# 2 does. list(product(...)) from the table is consumed by a zero-length deque here: building the
# list would hit the 256 MiB limit (MEMORY_LIMIT) long before the CPU limit.
C_LEVEL_LOOPS = {
    "sum-range": "print(sum(range(10**11)))\n",
    "deque-repeat": "import collections, itertools\n"
    "collections.deque(itertools.repeat(None, 10**11), maxlen=0)\nprint(3)\n",
    "product": "import collections, itertools\n"
    "collections.deque(itertools.product(range(10), repeat=12), maxlen=0)\nprint(3)\n",
    "pbkdf2": "import hashlib\nhashlib.pbkdf2_hmac('sha256', b'x', b'y', 10**8)\nprint(3)\n",
    "big-power": "x = 10**(10**8)\nprint(3)\n",
    "redos": "import re\nre.match(r'(a+)+$', 'a' * 64 + '!')\nprint(3)\n",
}


@pytest.mark.parametrize("program", C_LEVEL_LOOPS.values(), ids=C_LEVEL_LOOPS.keys())
def test_a12_c_level_loops_are_killed_in_time(executor, program):
    started = time.monotonic()
    res = executor.execute(SUM, program)
    elapsed = time.monotonic() - started
    cpu = executor.limits["cpu_s"]
    assert res.verdict == V.TIMEOUT, res
    assert res.tests[0].time_s <= cpu + KILL_SLACK_S, res.tests[0]
    assert res.tests[0].wall_s <= executor.limits["wall_s"] + KILL_SLACK_S, res.tests[0]
    assert elapsed <= executor.limits["wall_s"] + KILL_SLACK_S + 1.0, elapsed


ALARM_TRICKS = {
    "ignore-SIGALRM": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n",
    "alarm-0": "import signal\nsignal.alarm(0)\nwhile True:\n    pass\n",
    "setitimer-0": "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\n"
    "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n",
    "ignore-everything": "import signal\nfor s in signal.valid_signals():\n    try:\n"
    "        signal.signal(s, signal.SIG_IGN)\n    except (OSError, ValueError):\n        pass\n"
    "while True:\n    pass\n",
}


@pytest.mark.parametrize("program", ALARM_TRICKS.values(), ids=ALARM_TRICKS.keys())
def test_a13_in_process_timer_tricks(executor, program):
    res = executor.execute(SUM, program)
    assert res.verdict == V.TIMEOUT, res
    assert res.tests[0].time_s <= executor.limits["cpu_s"] + KILL_SLACK_S, res.tests[0]
    assert res.tests[0].wall_s <= executor.limits["wall_s"] + KILL_SLACK_S, res.tests[0]


RECURSION = {
    # The table's program. CPython 3.11 runs pure-Python recursion without the C stack, so it
    # cannot segfault: it fills the 256 MiB address space, which takes about the whole 1 s CPU
    # limit here, so TIMEOUT is as legitimate as MEMORY_LIMIT at these limits.
    "python-frames": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
        {V.RUNTIME_ERROR, V.MEMORY_LIMIT, V.TIMEOUT},
    ),
    # Recursion through C (sorted's key call) overflows the C stack: SIGSEGV.
    "c-stack": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return sorted([n], key=f)\nf(0)\n",
        {V.RUNTIME_ERROR, V.MEMORY_LIMIT},
    ),
    "getattr-loop": (
        "import sys\nsys.setrecursionlimit(10**8)\nclass A:\n    def __getattr__(self, name):\n"
        "        return getattr(self, name)\nA().x\n",
        {V.RUNTIME_ERROR, V.MEMORY_LIMIT},
    ),
}


@pytest.mark.parametrize(("program", "allowed"), RECURSION.values(), ids=RECURSION.keys())
def test_a14_deep_recursion(executor, program, allowed, still_serving):
    res = executor.execute(SUM, program)
    assert res.verdict in allowed, res
    still_serving(executor)


ORPHANS = {
    "A15-setsid-busy-child": "import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n"
    "        pass\nprint(3)\n",
    "A16-daemon": """\
import ctypes, os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(s, signal.SIG_IGN)
    ctypes.CDLL(None).prctl(15, b'kworker/0:1', 0, 0, 0)  # PR_SET_NAME
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        time.sleep(0.01)
        sum(range(10**5))
time.sleep(0.2)
print(3)
""",
    "A16-many-daemons": """\
import os, signal
for _ in range(20):
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            while True:
                pass
        os._exit(0)
print(3)
""",
}


@pytest.mark.parametrize("program", ORPHANS.values(), ids=ORPHANS.keys())
def test_a15_a16_orphans_do_not_survive_the_run(executor, program, no_leftover_processes):
    started = time.monotonic()
    res = executor.execute(SUM, program)
    assert res.verdict == V.PASSED, res
    assert time.monotonic() - started < executor.limits["wall_s"], "the verdict waited on the orphans"
    no_leftover_processes(executor)


NO_STDIN = [
    (NO_INPUT, "print(int(input()) + 2)\n", "EOFError"),
    (NO_INPUT, "import sys\nprint(int(sys.stdin.read()) + 2)\n", "ValueError"),
    (NO_INPUT, "import sys\nprint(sys.stdin.buffer.read()[0])\n", "IndexError"),
    (ADD, "def add(a, b):\n    return int(input())\n", "EOFError"),
]


@pytest.mark.parametrize(("problem", "program", "error"), NO_STDIN, ids=["input", "read", "buffer", "call"])
def test_a17_reading_missing_input_fails_fast(executor, problem, program, error):
    started = time.monotonic()
    res = executor.execute(problem, program)
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type == error, res.error
    assert time.monotonic() - started < 1.5


DEVICES = {
    "dev-zero": "data = open('/dev/zero', 'rb').read()\nprint(3)\n",
    "dev-urandom": "data = open('/dev/urandom', 'rb').read()\nprint(3)\n",
    "dev-zero-text": "data = open('/dev/zero').read()\nprint(3)\n",
}


@pytest.mark.parametrize("program", DEVICES.values(), ids=DEVICES.keys())
def test_a18_unbounded_devices(executor, program, still_serving):
    res = executor.execute(SUM, program)
    assert res.verdict in {V.MEMORY_LIMIT, V.TIMEOUT}, res
    still_serving(executor)
