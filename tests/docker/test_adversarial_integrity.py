"""Integrity of the reward (issue 12): each class of hole found by attacking the executor, with
programs the other suites did not contain. For each class: the attack gets the program's own
verdict (never SANDBOX_ERROR, never a pass it did not earn), and honest programs keep passing
afterwards, in the same sandboxes.

  H1 a process that hides from a state-based liveness scan (zombie thread-group leader)
  H2 values built to collide in Python's hash, sent to the host
  H3 signals, prlimit and oversized control frames aimed at the harness
  H4 integer answers given as float-looking tokens
  H5 correct programs the harness used to fail (huge module-level tables, stdlib containers)
  H6 CPU burnt in child processes
  H7 scheduling state pushed onto harness processes
  H8 socket families outside the network namespace (vsock, netlink...)
"""

from __future__ import annotations

import time

import pytest
from adversarial_corpus import ADD, SUM, SUM_OK

from coderl.outcomes import Verdict
from executor import ExecutionItem
from problems import Problem, TestCase

pytestmark = pytest.mark.docker
V = Verdict


def stdio(expected: str, task: str = "survey") -> Problem:
    return Problem(
        task_id=task, statement="", hidden_tests=[TestCase(kind="stdio", stdin="", stdout=expected)]
    )


def asserts(code: str, task: str = "asserts") -> Problem:
    return Problem(task_id=task, statement="", hidden_tests=[TestCase(kind="assert", code=code)])


def call(fn_name: str, args: list, expected: object, task: str = "call") -> Problem:  # type: ignore[type-arg]
    test = TestCase(kind="call", args=args, expected=expected)
    return Problem(task_id=task, statement="", fn_name=fn_name, hidden_tests=[test])


ADD_ASSERT = asserts("assert add(1, 2) == 3\nassert add(-1, 1) == 0\n", "add-assert")


def honest_batch(n: int) -> list[ExecutionItem]:
    return [ExecutionItem(SUM, SUM_OK) for _ in range(n)]


# --- H1: no process may survive a job ------------------------------------------------------------------
# The child's leader thread ends with the raw exit system call while another thread keeps running:
# /proc/<pid>/stat then says "Z". The surviving thread kills every newer process it sees.
ZOMBIE_LEADER = """\
import ctypes, os, platform, threading, time
EXIT = {"x86_64": 60, "aarch64": 93}[platform.machine()]
if os.fork() == 0:
    def hunt():
        me = os.getpid()
        while True:
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) > me:
                    try:
                        os.kill(int(name), 9)
                    except OSError:
                        pass
            time.sleep(0.002)
    threading.Thread(target=hunt).start()
    time.sleep(0.02)
    ctypes.CDLL(None).syscall(EXIT, 0)
time.sleep(0.05)
a, b = map(int, input().split())
print(a + b)
"""


def test_h1_a_thread_behind_a_zombie_leader_does_not_survive(executor, still_serving, no_leftover_processes):
    items = [ExecutionItem(SUM, ZOMBIE_LEADER if i % 2 else SUM_OK) for i in range(40)]
    results = executor.execute_many(items)
    honest = [r.verdict for i, r in enumerate(results) if i % 2 == 0]
    assert honest == [V.PASSED] * 20, results
    assert all(r.attempts == 1 for r in results), [r.attempts for r in results]
    assert {r.verdict for i, r in enumerate(results) if i % 2} <= {V.PASSED, V.RUNTIME_ERROR}
    no_leftover_processes(executor)
    still_serving(executor)


# --- H2: the host decodes program data in time linear in its size ----------------------------------------
# The program writes its own "returned" frame, 40,000 multiples of 2**61 - 1 (all of one hash, and
# under the 1 MiB output limit these tests run with): building a Python set of them took the host
# 7.5 s of CPU, during which every other program waited.
COLLIDING_RETURN = """\
import json, os, struct
def add(a, b):
    return a + b
value = {"$set": [k * (2**61 - 1) for k in range(1, 40001)]}
body = json.dumps({"event": "returned", "value": value}).encode()
os.write(3, struct.pack(">I", len(body)) + body)
"""


def test_h2_colliding_values_do_not_stall_the_host(executor):
    started = time.monotonic()
    items = [ExecutionItem(call("add", [1, 2], 3), COLLIDING_RETURN) for _ in range(4)] + honest_batch(20)
    results = executor.execute_many(items)
    elapsed = time.monotonic() - started
    assert [r.verdict for r in results[:4]] == [V.FAILED_TEST] * 4, results[:4]
    assert "set" in results[0].error.message, results[0].error
    assert [r.verdict for r in results[4:]] == [V.PASSED] * 20
    assert elapsed < 10, f"the batch took {elapsed:.1f} s"  # 4 x 7.5 s of host CPU before the fix


def test_h2_colliding_values_cost_the_program_its_own_time_in_the_runner(executor):
    # In assert mode the tests compare real sets, built by the runner inside the sandbox: the time
    # that takes is the job's, so the program times out instead of stalling anything.
    program = COLLIDING_RETURN.replace("40001", "200001")
    res = executor.execute(asserts("assert add(1, 2) == {1}"), program.replace("os.write(3", "x = (3"))
    assert res.verdict == V.FAILED_TEST, res  # the forged frame never reached the runner's channel
    slow = "def f():\n    return {k * (2**61 - 1) for k in range(1, 200001)}\n"
    res = executor.execute(asserts("assert f() == {1}"), slow)
    assert res.verdict == V.TIMEOUT, res


# --- H3: a program cannot turn its verdict into a harness fault -----------------------------------------
# Every process of the sandbox but the program's own is a harness process, under another uid.
TOUCH_EVERY_PROCESS = """\
import os, resource, signal
touched = set()
attacks = (
    lambda pid: os.kill(pid, signal.SIGINT),
    lambda pid: os.kill(pid, signal.SIGTERM),
    lambda pid: os.kill(pid, signal.SIGSTOP),
    lambda pid: resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3)),
    lambda pid: resource.prlimit(pid, resource.RLIMIT_AS, (1 << 20, 1 << 20)),
    lambda pid: os.setpriority(os.PRIO_PROCESS, pid, 19),
    lambda pid: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)),
    lambda pid: os.sched_setaffinity(pid, {0}),
)
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        for attack in attacks:
            try:
                attack(int(name))
                touched.add(int(name))
            except OSError:
                pass
RESULT = "untouched" if not touched else f"touched {sorted(touched)}"
"""
H3_MODES = {
    "stdio": (stdio("untouched\n"), TOUCH_EVERY_PROCESS + "print(RESULT)\n"),
    "call": (call("result", [], "untouched"), TOUCH_EVERY_PROCESS + "def result():\n    return RESULT\n"),
    "assert": (
        asserts("assert result() == 'untouched'"),
        TOUCH_EVERY_PROCESS + "def result():\n    return RESULT\n",
    ),
}


@pytest.mark.parametrize("mode", H3_MODES, ids=H3_MODES.keys())
def test_h3_no_signal_or_prlimit_reaches_a_harness_process(make_executor, mode):
    problem, program = H3_MODES[mode]
    with make_executor(workers=1) as ex:
        first = ex.execute(problem, program)
        later = [ex.execute(p, prog) for p, prog in H3_MODES.values()] + [ex.execute(ADD_ASSERT, ADD_OK)]
    assert first.verdict == V.PASSED, first.error
    assert [r.verdict for r in later] == [V.PASSED] * 4, [r.error for r in later]
    assert all(r.attempts == 1 for r in [first, *later])


ADD_OK = "def add(a, b):\n    return a + b\n"
UNCAUGHT = {
    "sigint-pid1": "import os, signal\nos.kill(1, signal.SIGINT)\n",
    "sigint-parent": "import os, signal\nos.kill(os.getppid(), signal.SIGINT)\n",
    "prlimit-pid1": "import resource\nresource.prlimit(1, resource.RLIMIT_NOFILE, (3, 3))\n",
}


@pytest.mark.parametrize("attack", UNCAUGHT.values(), ids=UNCAUGHT.keys())
def test_h3_a_failed_attack_is_the_programs_runtime_error(executor, attack, still_serving):
    for problem, program in ((SUM, attack + SUM_OK), (ADD_ASSERT, attack + ADD_OK), (ADD, attack + ADD_OK)):
        res = executor.execute(problem, program)
        assert res.verdict == V.RUNTIME_ERROR and res.error.type == "PermissionError", res
    still_serving(executor)


# A program starts with a fresh interpreter's signal dispositions, not the harness's (which
# ignores some): a multiprocessing worker that ignored SIGTERM made Pool.terminate() hang.
DISPOSITIONS = """\
import signal
dfl = [s for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT,
       signal.SIGCHLD, signal.SIGALRM) if signal.getsignal(s) is not signal.SIG_DFL]
ok = signal.getsignal(signal.SIGINT) is signal.default_int_handler and not dfl
print("fresh" if ok else f"inherited {dfl}")
"""


def test_h3_programs_start_with_default_signal_dispositions(executor):
    res = executor.execute(stdio("fresh\n"), DISPOSITIONS)
    assert res.verdict == V.PASSED, res.error


# Control frames whose characters re-encode to 3x their bytes (a 4-byte emoji becomes a 12-byte
# escape pair): they once overflowed the host's reply limit and came back as SANDBOX_ERROR.
CONTROL_FLOOD = """\
import json, os, struct
def add(a, b):
    return a + b
for kind in ("returned", "exception", "ready"):
    body = json.dumps({"event": kind, "value": "\\U0001F600" * 200_000}, ensure_ascii=False).encode()
    for _ in range(20):
        os.write(3, struct.pack(">I", len(body)) + body)
"""


def test_h3_control_frames_count_against_the_output_limit(make_executor):
    started = time.monotonic()
    with make_executor(workers=1) as ex:
        res = ex.execute(ADD, CONTROL_FLOOD)
        later = ex.execute(ADD, ADD_OK)
    assert res.verdict == V.OUTPUT_LIMIT, res
    assert later.verdict == V.PASSED and later.attempts == 1, later
    assert time.monotonic() - started < 20  # start, two runs and shutdown: no stall


# --- H4: an integer answer takes only that integer -----------------------------------------------------
INTEGER_TRAPS = [
    (stdio("1000000007\n"), "print('1e9')\n"),
    (stdio("1000000000\n"), "print(1000000000.0)\n"),
    (stdio("0\n"), "print('0.0000009')\n"),
    (call("big", [], 10**18 + 1), "def big():\n    return float(10**18)\n"),
]


@pytest.mark.parametrize(("problem", "program"), INTEGER_TRAPS, ids=["1e9", "x.0", "tiny", "float-call"])
def test_h4_float_looking_answers_to_integer_questions_fail(executor, problem, program):
    res = executor.execute(problem, program)
    assert res.verdict == V.FAILED_TEST, res


# --- H5: correct programs pass as the format's reference harness would pass them -----------------------
TABLE = "TABLE = [i % 7 for i in range(3_000_000)]\n"
SELF_REFERENTIAL = "LOOP = []\nLOOP.append(LOOP)\n"
HONEST = {
    "huge-table": (ADD_ASSERT, TABLE + ADD_OK),
    "self-referential": (ADD_ASSERT, SELF_REFERENTIAL + ADD_OK),
    "table-read-by-tests": (asserts("assert add(1, 2) == 3 and LIMIT == 7"), "LIMIT = 7\n" + TABLE + ADD_OK),
    "counter-call": (
        call("count", ["abca"], {"a": 2, "b": 1, "c": 1}),
        "from collections import Counter\ndef count(s):\n    return Counter(s)\n",
    ),
    "counter-assert": (
        asserts("from collections import Counter\nassert count('abca') == Counter('aabc')\n"
                "assert count('abca').most_common(1) == [('a', 2)]\nassert count('x')['y'] == 0\n"),
        "from collections import Counter\ndef count(s):\n    return Counter(s)\n",
    ),
    "namedtuple-call": (
        call("point", [], [1, 2]),
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef point():\n    return P(1, 2)\n",
    ),
    "namedtuple-assert": (
        asserts("assert point() == (1, 2)\nassert point().y == 2\n"),
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef point():\n    return P(1, 2)\n",
    ),
    "ordereddict-assert": (
        asserts("from collections import OrderedDict\nassert pairs() == OrderedDict([('b', 1), ('a', 2)])\n"),
        "from collections import OrderedDict\ndef pairs():\n    return OrderedDict([('b', 1), ('a', 2)])\n",
    ),
    "defaultdict-call": (
        call("groups", [], {"a": [1, 2]}),
        "from collections import defaultdict\ndef groups():\n    d = defaultdict(list)\n"
        "    d['a'] += [1, 2]\n    return d\n",
    ),
    "subclass-with-its-own-eq": (
        call("value", [], [1, 2]),
        "class L(list):\n    def __eq__(self, other):\n        return False\n"
        "def value():\n    return L([1, 2])\n",
    ),
    # 600 KB as it travels (\\u00e9 escapes), under the 1 MiB output limit of these tests
    "long-string": (call("text", [], "\u00e9" * 100_000), "def text():\n    return '\u00e9' * 100_000\n"),
}  # fmt: skip


@pytest.mark.parametrize(("problem", "program"), HONEST.values(), ids=HONEST.keys())
def test_h5_correct_programs_pass(executor, problem, program):
    res = executor.execute(problem, program)
    assert res.verdict == V.PASSED, res


APPS_CALL = Problem(
    task_id="apps-sum",
    statement="",
    source="apps",
    fn_name="total",
    hidden_tests=[TestCase(kind="call", args=[[1, 2, 3]], expected=6)],
)


@pytest.mark.parametrize(
    "program",
    [
        "def total(xs):\n    return int(np.sum(np.array(xs)))\n",
        "import sys\ndef total(xs):\n    return sum(xs) if 'numpy' not in sys.modules else -1\n",
        "import numpy\ndef total(xs):\n    return int(numpy.asarray(xs).sum())\n",
    ],
    ids=["uses-np", "never-touches-np", "imports-numpy"],
)
def test_h5_apps_programs_get_np_when_they_use_it(executor, program):
    # APPS's header imports numpy as np for every program: here np loads on first use.
    res = executor.execute(APPS_CALL, program)
    assert res.verdict == V.PASSED, res


# The program's own __eq__ never decides: a list subclass claiming equality is judged by its contents.
LIAR = "class L(list):\n    def __eq__(self, other):\n        return True\ndef value():\n    return L([9])\n"


def test_h5_a_lying_subclass_is_judged_by_its_contents(executor):
    assert executor.execute(call("value", [], [1, 2]), LIAR).verdict == V.FAILED_TEST
    assert executor.execute(asserts("assert value() == [1, 2]"), LIAR).verdict == V.FAILED_TEST


# --- H6: the CPU limit counts every process of a job -------------------------------------------------------
BURN = """\
import os, time
def burn(s):
    end = time.process_time() + s
    while time.process_time() < end:
        pass
"""
CPU_IN_CHILDREN = {
    "two-children": BURN + "kids = []\nfor _ in range(2):\n    pid = os.fork()\n    if pid == 0:\n"
    "        burn(0.7)\n        os._exit(0)\n    kids.append(pid)\n"
    "for pid in kids:\n    os.waitpid(pid, 0)\n",
    "child-then-parent": BURN + "pid = os.fork()\nif pid == 0:\n    burn(0.7)\n    os._exit(0)\n"
    "os.waitpid(pid, 0)\nburn(0.7)\n",
    "pool": BURN
    + "from multiprocessing import Pool\nwith Pool(2) as pool:\n    pool.map(burn, [0.7, 0.7])\n",
    "daemon-waited-for": BURN + "r, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n    burn(1.4)\n"
    "    os.write(w, b'x')\n    os._exit(0)\nos.read(r, 1)\n",
}


@pytest.mark.parametrize("program", CPU_IN_CHILDREN.values(), ids=CPU_IN_CHILDREN.keys())
def test_h6_cpu_of_children_counts(executor, program, still_serving):
    res = executor.execute(SUM, program + SUM_OK)
    assert res.verdict == V.TIMEOUT, res
    still_serving(executor)


def test_h6_a_child_within_the_limit_is_fine_and_counted(executor):
    program = BURN + "pid = os.fork()\nif pid == 0:\n    burn(0.3)\n    os._exit(0)\nos.waitpid(pid, 0)\n"
    res = executor.execute(SUM, program + SUM_OK)
    assert res.verdict == V.PASSED, res
    assert 0.3 <= res.tests[0].time_s < 1.0, res.tests[0]


# --- H7: scheduling state cannot be pushed onto the harness ------------------------------------------------
RESCHEDULE_HARNESS = """\
import ctypes, os, platform
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
moved = []
for pid in [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid()]:
    for policy in (os.SCHED_IDLE, os.SCHED_BATCH):
        try:
            os.sched_setscheduler(pid, policy, os.sched_param(0))
            moved.append(pid)
        except OSError:
            pass
    if libc.syscall(IOPRIO_SET, 1, pid, 3 << 13) == 0:  # idle I/O class
        moved.append(pid)
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # its own: allowed, ends with it
os.nice(19)
print("untouched" if not moved else f"moved {moved}")
"""
OWN_SCHEDULING = """\
import ctypes, os, platform
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}[platform.machine()]
io = ctypes.CDLL(None).syscall(IOPRIO_GET, 1, 0)
print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0), io >> 13 != 3)
"""


def test_h7_scheduling_state_does_not_reach_later_programs(make_executor):
    with make_executor(workers=1) as ex:
        baseline = ex.execute(stdio(f"{0} 0 True\n"), OWN_SCHEDULING)
        attack = ex.execute(stdio("untouched\n"), RESCHEDULE_HARNESS)
        later = [ex.execute(stdio("0 0 True\n"), OWN_SCHEDULING) for _ in range(3)]
    assert baseline.verdict == V.PASSED, baseline.error
    assert attack.verdict == V.PASSED, attack.error
    assert [r.verdict for r in later] == [V.PASSED] * 3, [r.error for r in later]
    assert all(r.attempts == 1 for r in later)


# --- H8: only the socket families a judged program needs ---------------------------------------------
SOCKETS = """\
import errno, socket
found = []
refused = [(40, 1, 0), (16, 3, 9), (16, 3, 15), (16, 3, 0), (17, 3, 0), (38, 5, 0), (4, 2, 0)]
for family, kind, proto in refused:
    try:
        socket.socket(family, kind, proto).close()
        found.append(f"{family}/{proto}:open")
    except OSError as exc:
        found.append(f"{family}/{proto}:{errno.errorcode.get(exc.errno)}")
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    socket.socket(family, socket.SOCK_STREAM).close()
a, b = socket.socketpair()
a.sendall(b"ok")
print(" ".join(found), b.recv(2).decode())
"""
DENIED = "40/0:EPERM 16/9:EPERM 16/15:EPERM 16/0:EPERM 17/0:EPERM 38/0:EPERM 4/0:EPERM ok\n"
# Honest programs that use what the profile must keep working.
LIBRARIES = """\
import asyncio, multiprocessing, subprocess, sys, threading, shutil, tempfile
import numpy
t = threading.Thread(target=lambda: None)
t.start()
t.join()
with multiprocessing.Pool(2) as pool:
    assert pool.map(abs, [-1, -2]) == [1, 2]
out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout
assert asyncio.run(asyncio.sleep(0, result=1)) == 1
with tempfile.TemporaryDirectory() as d:
    open(d + "/a", "w").write("x")
    shutil.copy(d + "/a", d + "/b")
print(int(out) + int(numpy.arange(3).sum()) - 3)
"""


def test_h8_socket_families_outside_the_network_namespace_are_refused(executor):
    res = executor.execute(stdio(DENIED), SOCKETS)
    assert res.verdict == V.PASSED, res.error


def test_h8_honest_programs_keep_what_they_need(executor):
    res = executor.execute(stdio("42\n"), LIBRARIES)
    assert res.verdict == V.PASSED, res.error


# --- no sandbox outlives its executor --------------------------------------------------------------------
def test_a_killed_executor_leaves_no_sandbox_behind(docker_client):
    # The harness's stdin closes with the executor's stream (StdinOnce): the harness exits and the
    # container removes itself, even when the executor was killed (kill -9) and closed nothing.
    import subprocess
    import sys

    start = "from executor import Executor, ExecutorConfig\nex = Executor(ExecutorConfig(workers=2))\n"
    script = start + "print(ex.pool.owner, flush=True)\nimport time\ntime.sleep(120)\n"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    owner = process.stdout.readline().strip()
    label = {"label": f"org.coderl.sandbox.owner={owner}"}
    assert len(docker_client.containers.list(sparse=True, filters=label)) == 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while docker_client.containers.list(all=True, sparse=True, filters=label) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert docker_client.containers.list(all=True, sparse=True, filters=label) == []
