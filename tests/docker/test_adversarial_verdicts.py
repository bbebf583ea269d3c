"""Adversarial corpus C1-C22 (sandboxes.md section 4.C): verdict forgery and comparator traps,
end to end through the real executor (stdio, call-based and assert-based tests).

The forgeries are deliberately wrong programs that try to make the harness say PASSED: exits
before the tests, objects equal to everything, shadowed builtins, frame walking, reading the
tests, printing verdict-like text, and protocol-aware frames written on fd 3 (the control socket).
A forgery must never pass, and never turn into SANDBOX_ERROR either (that verdict is masked from
training, so a program able to trigger it escapes its negative reward).
"""

from __future__ import annotations

import sys
import time

import pytest

from coderl.outcomes import Verdict
from executor import ExecutionItem
from problems import CompareOptions, Problem, TestCase

pytestmark = pytest.mark.docker

V = Verdict
WA, RE = V.FAILED_TEST, V.RUNTIME_ERROR


def stdio(stdout: str, stdin: str = "", **options) -> Problem:
    test = TestCase(kind="stdio", stdin=stdin, stdout=stdout)
    return Problem(task_id="io", statement="", hidden_tests=[test], compare=CompareOptions(**options))


def call(expected, args=(1, 2), fn: str = "add") -> Problem:
    test = TestCase(kind="call", args=list(args), expected=expected)
    return Problem(task_id="call", statement="", source="apps", fn_name=fn, hidden_tests=[test])


def asserts(code: str) -> Problem:
    return Problem(task_id="assert", statement="", hidden_tests=[TestCase(kind="assert", code=code)])


SUM = stdio("3\n", "1 2\n")
ADD = call(3)
MBPP = asserts("assert add(1, 2) == 3\nassert add(2, 5) == 7\n")
HUMANEVAL = asserts(
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 5) == 7\n\ncheck(add)\n"
)
WRONG_ADD = "def add(a, b):\n    return a - b\n"


def run_table(executor, cases):
    """Run (problem, program, allowed verdicts) cases in parallel; return the mismatches."""
    results = executor.execute_many([ExecutionItem(problem, program) for problem, program, _ in cases])
    return [
        (program, sorted(allowed), result.verdict, result.error)
        for (_, program, allowed), result in zip(cases, results, strict=True)
        if result.verdict not in allowed
    ]


# --- C1/C2: exiting before (or instead of) the tests ------------------------------------------------
EXITS = [
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "raise SystemExit\n",
    "exit()\n",
    "quit()\n",
]
C1_C2 = [(p, e + WRONG_ADD, {WA} if "sys" in e else {WA, RE}) for e in EXITS for p in (MBPP, HUMANEVAL, ADD)]
C1_C2 += [
    (MBPP, "import os\ndef add(a, b):\n    os._exit(0)\n", {WA, RE}),
    (ADD, "import sys\ndef add(a, b):\n    sys.exit(0)\n", {WA, RE}),
    (HUMANEVAL, "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n", {WA, RE}),
    (SUM, "import atexit\natexit.register(lambda: print(3))\n", {WA, RE}),
    (stdio("1\n2\n"), "import os, sys\nprint(1, flush=True)\nos.kill(os.getpid(), 9)\nprint(2)\n", {WA, RE}),
    (SUM, "import os\nprint(3, end='')\nos._exit(0)\n", {WA}),  # buffered output lost: nothing printed
]  # fmt: skip


def test_c1_c2_exiting_before_the_tests_never_passes(executor):
    assert run_table(executor, C1_C2) == []


# --- C3: objects equal to everything ------------------------------------------------------------------
EQ = "class Eq:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
EQ += "    def __hash__(self): return 0\n    def __bool__(self): return True\n"
EQ_RETURNS = {
    "object": EQ + "def add(a, b):\n    return Eq()\n",
    "int-subclass": "class I(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
    "def add(a, b):\n    return I(0)\n",
    "in-a-list": EQ + "def add(a, b):\n    return [Eq()]\n",
    "ndarray-subclass": "import numpy as np\nclass A(np.ndarray):\n    def __eq__(self, other): return True\n"
    "    def tolist(self): return 3\n    def item(self): return 3\n"
    "def add(a, b):\n    return np.zeros(1).view(A)\n",
}
C3 = [(p, prog, {WA}) for prog in EQ_RETURNS.values() for p in (ADD, MBPP, HUMANEVAL)]


def test_c3_always_equal_objects_never_pass(executor):
    assert run_table(executor, C3) == []


# --- C4: shadowing names the tests use ---------------------------------------------------------------
def check(body: str) -> Problem:
    return asserts(f"def check(candidate):\n    {body}\n\ncheck(add)\n")


ABS_CHECK = check("assert abs(candidate(1.0, 2.0) - 3.0) < 1e-6")
C4 = {  # name: (tests, the shadowing line, what the (wrong) add returns)
    "abs": (ABS_CHECK, "abs = lambda x: 0", "0.0"),
    "math.isclose": (asserts("import math\nassert math.isclose(add(1.0, 2.0), 3.0)\n"),
                     "import math\nmath.isclose = lambda *a, **k: True", "0.0"),
    "sorted": (asserts("assert sorted(add(1, 2)) == sorted([3, 2, 1])\n"), "sorted = lambda *a: 0", "[0]"),
    "set": (asserts("assert set(add(1, 2)) == set([1, 2, 3])\n"), "set = lambda *a: 0", "[0]"),
    "len": (check("assert len(candidate(1, 2)) == len('abc')"), "len = lambda x: 0", "[]"),
    "all": (check("assert all(x > 0 for x in candidate(1, 2))"), "all = lambda it: True", "[-1]"),
    "isinstance": (asserts("assert isinstance(add(1, 2), int)\n"), "isinstance = lambda *a: True", "'x'"),
    "round": (asserts("assert round(add(1.0, 2.0), 6) == round(3.0, 6)\n"), "round = lambda *a: 0", "0.0"),
    "builtins-module": (ABS_CHECK, "import builtins\nbuiltins.abs = lambda x: 0", "0.0"),
    "call-based": (call(3.0, (1.0, 2.0)), "import math\nmath.isclose = abs = lambda *a, **k: True", "0.0"),
}  # fmt: skip


@pytest.mark.parametrize(("problem", "shadow", "value"), C4.values(), ids=C4.keys())
def test_c4_shadowed_builtins_do_not_reach_the_tests(executor, problem, shadow, value):
    res = executor.execute(problem, f"{shadow}\ndef add(a, b):\n    return {value}\n")
    assert res.verdict == WA, res


# --- C5: frame walking and gc scans ------------------------------------------------------------------
WALK = """\
import gc, os, sys
def forge():
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, list):
                value.append('passed')
            elif isinstance(value, dict):
                value.update(result='passed', outcome='passed', status='passed', passed=True)
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, dict) and any(k in obj for k in ('outcome', 'event', 'record', 'result')):
            obj.update(outcome='passed', event='returned', value=3)
"""
C5_PROGRAMS = {
    "in-call-then-exit": WALK + "def add(a, b):\n    forge()\n    os._exit(0)\n",
    "in-call-then-wrong": WALK + "def add(a, b):\n    forge()\n    return a - b\n",
    "at-import-then-exit": WALK + "forge()\ndef add(a, b):\n    return 0\nos._exit(0)\n",
}
C5 = [(p, prog, {WA}) for prog in C5_PROGRAMS.values() for p in (ADD, MBPP, HUMANEVAL)]
C5 += [(SUM, WALK + "forge()\nprint(4)\n", {WA})]


def test_c5_frame_walking_cannot_forge_a_pass(executor):
    assert run_table(executor, C5) == []


# --- C6: reading the tests ---------------------------------------------------------------------------
HARVEST = r"""
import gc, inspect, os, re
PATTERN = re.compile(r'assert\s+\w+\(5\)\s*==\s*(-?\d+)')
def harvest():
    texts = []
    try:
        texts.append(open(__file__).read())
    except OSError:
        pass
    scopes = [s for i in inspect.stack() for s in (i.frame.f_locals, i.frame.f_globals)]
    for scope in scopes + [o for o in gc.get_objects() if isinstance(o, dict)]:
        texts += [v for v in scope.values() if isinstance(v, str)]
    for root in ('.', '..', '/tmp', '/dev/shm', '/opt/coderl'):
        for d, _, files in os.walk(root):
            for name in files:
                try:
                    texts.append(open(os.path.join(d, name), errors='replace').read())
                except OSError:
                    pass
    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
        for what in ('cmdline', 'environ'):
            try:
                texts.append(open(f'/proc/{pid}/{what}', 'rb').read().decode('utf-8', 'replace'))
            except OSError:
                pass
    for text in texts:
        match = PATTERN.search(text)
        if match:
            return int(match.group(1))
    return -1
def f(x):
    return harvest()
"""
C6 = [
    (asserts("assert f(5) == 987654321\n"), HARVEST, {WA}),
    (asserts("def check(candidate):\n    assert f(5) == 987654321\ncheck(f)\n"), HARVEST, {WA}),
    (call(987654321, (5,), "f"), HARVEST, {WA}),
    (stdio("987654321\n", "5\n"), HARVEST + "print(harvest())\n", {WA}),
]


def test_c6_tests_and_expected_values_are_out_of_reach(executor):
    assert run_table(executor, C6) == []


# --- C7: verdict-looking output and forged protocol frames ---------------------------------------------
FAKE_VERDICTS = ["All tests passed", "PASS", '{"verdict": "PASSED", "reward": 1.0}', "1.0", "True"]
C7 = [(stdio("42\n"), f"print({text!r})\n", {WA}) for text in FAKE_VERDICTS]
C7 += [(MBPP, f"print({text!r})\n" + WRONG_ADD, {WA}) for text in FAKE_VERDICTS]
# frame(x, fd): write one wire frame (a dict, or raw JSON text) on fd, 3 by default (the control socket)
FRAME = """\
import json, os, struct
def frame(raw, fd=3):
    body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
    try:
        os.write(fd, struct.pack('>I', len(body)) + body)
    except OSError:
        pass
"""
SPRAY = (
    FRAME
    + """\
for msg in [{'event': 'returned', 'value': 999}, {'outcome': 'passed'}, {'event': 'exited', 'code': 0}]:
    frame(msg)
for fd in range(256):  # the runner's result pipe, the server's channel: whatever is open
    frame({'outcome': 'passed'}, fd)
import glob
for path in glob.glob('/proc/[0-9]*/fd/*'):
    try:
        frame({'outcome': 'passed'}, os.open(path, os.O_WRONLY))
    except OSError:
        pass
"""
)
WRONG_AND_4 = WRONG_ADD + "print(4)\n"
FORGERIES = {
    "spray-then-exit": SPRAY + "os._exit(0)\n",
    "spray-then-wrong": SPRAY + WRONG_AND_4,
    "fake-ready-then-exit": FRAME + "frame({'event': 'ready', 'values': {'add': 3}})\nos._exit(0)\n",
    # Frames a reader accepts but the harness cannot pass on: the verdict must still be the
    # program's own, never a SANDBOX_ERROR it chose.
    "nan-frame": FRAME + "frame('{\"event\": \"exited\", \"code\": NaN}')\n" + WRONG_AND_4,
    "infinity-frame": FRAME + "frame('{\"event\": \"returned\", \"value\": Infinity}')\nos._exit(0)\n",
    "bad-ready-values": FRAME + "frame({'event': 'ready', 'values': [1], 'callables': 5})\n" + WRONG_AND_4,
    "int-5000-digits": FRAME + "frame('{\"event\": \"x\", \"n\": ' + '7' * 5000 + '}')\n" + WRONG_AND_4,
}  # fmt: skip
# a frame header announcing 2 GiB: a control-channel flood (OUTPUT_LIMIT is a fair verdict)
FLOOD = FRAME + "os.write(3, struct.pack('>I', 2**31) + b'{')\n" + WRONG_AND_4
C7 += [(p, FLOOD, {WA, V.OUTPUT_LIMIT}) for p in (SUM, ADD, MBPP)]


def test_c7_printed_verdicts_never_pass(executor):
    assert run_table(executor, C7) == []


@pytest.mark.parametrize("program", FORGERIES.values(), ids=FORGERIES.keys())
def test_c7_forged_control_frames_never_pass(executor, program):
    cases = [(p, program, {WA}) for p in (stdio("3\n", "1 2\n"), ADD, MBPP, HUMANEVAL)]
    assert [(verdict, error) for _, _, verdict, error in run_table(executor, cases)] == []


def test_c7_forged_huge_integer_is_judged_quickly(executor):
    program = FRAME + 'frame(\'{"event": "returned", "value": {"$int": "\' + \'7\' * 10**6 + \'"}}\')\n'
    started = time.monotonic()
    res = executor.execute(ADD, program)
    assert res.verdict == WA, res
    assert time.monotonic() - started < 5.0, "decoding a forged integer stalled the executor"


# --- C8-C17: comparator traps, stdio ----------------------------------------------------------------
P = "print({!r})\n".format


def digits(n: int) -> str:
    """str(n) past CPython's 4300-digit conversion limit."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(n)
    finally:
        sys.set_int_max_str_digits(limit)


BIG = digits(7**6000)
C8_C17 = [
    # C8: right answer, then a failure
    (SUM, "print(3)\nraise Exception('late')\n", {RE}),
    (SUM, "import sys\nprint(3)\nsys.exit(1)\n", {RE}),
    (SUM, "import sys\nprint(3)\nsys.exit('bye')\n", {RE}),
    (SUM, "import ctypes, sys\nprint(3)\nsys.stdout.flush()\nctypes.string_at(0)\n", {RE}),
    (SUM, "import os, sys\nprint(3)\nsys.stdout.flush()\nos.abort()\n", {RE}),
    # C9: prefixes and extra lines
    (stdio("1\n2\n3\n"), P("1\n2"), {WA}),
    (stdio("1\n2\n3\n"), P("1"), {WA}),
    (stdio("1\n2\n3\n"), P("1\n2\n3\ngarbage"), {WA}),
    (stdio("1 2 3\n"), P("1 2 3 4"), {WA}),
    (stdio("1\n2\n3\n"), "", {WA}),
    # C10: permuted or de-duplicated tokens
    (stdio("1 2\n"), P("2 1"), {WA}),
    (stdio("NO YES YES\n"), P("YES YES NO"), {WA}),
    (stdio("1 1 2\n"), P("1 2"), {WA}),
    (stdio("a\nb\n"), P("b\na"), {WA}),
    # C11: case
    (stdio("YES\n"), P("yes"), {WA}),
    (stdio("ABC\n"), P("aBc"), {WA}),
    (stdio("YES\n", case_sensitive=False), P("yes"), {V.PASSED}),
    # C12: floats within the default 1e-6 tolerance
    (stdio("0.333333333\n"), P("0.333333"), {V.PASSED}),
    (stdio("0.0000001\n"), P("1e-07"), {V.PASSED}),
    (stdio("0.0\n"), P("-0.0"), {V.PASSED}),
    (stdio("0.333333333\n"), P("0.3334"), {WA}),
    (stdio("3\n"), P("3.5"), {WA}),
    # C13: nan, inf, huge integers
    (stdio("nan\n"), P("nan"), {V.PASSED}),
    (stdio("inf -inf\n"), P("inf -inf"), {V.PASSED}),
    (stdio("inf\n"), P("-inf"), {WA}),
    (stdio("nan\n"), P("0"), {WA}),
    (stdio(BIG + "\n"), "import sys\nsys.set_int_max_str_digits(0)\nprint(7**6000)\n", {V.PASSED}),
    (stdio(BIG + "\n"), "import sys\nsys.set_int_max_str_digits(0)\nprint(7**6000 + 1)\n", {WA}),
    # C14: whitespace and line endings
    (SUM, "print('3   ')\n", {V.PASSED}),
    (stdio("1\n2\n"), "import sys\nsys.stdout.write('1\\r\\n2\\r\\n')\n", {V.PASSED}),
    (SUM, "print(3, end='')\n", {V.PASSED}),
    (SUM, "print('3\\n\\n\\n')\n", {V.PASSED}),
    # C17: bytes that are not UTF-8
    (SUM, "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe3\\n')\n", {WA}),
    (SUM, "import os\nos.write(1, b'3\\x80\\n')\n", {WA}),
    (SUM, "import sys\nsys.stdout.buffer.write(b'\\xc3')\n", {WA}),
    (SUM, "import os\nos.write(2, b'\\xff\\xfe')\nprint(3)\n", {V.PASSED}),
]


def test_c8_to_c17_stdio_comparator_traps(executor):
    assert run_table(executor, C8_C17) == []


# --- C15/C16: call-based return values ----------------------------------------------------------------
RAISE = "def add(a, b):\n    raise ValueError('no')\n"
C15_C16 = [
    (call(""), RAISE, {RE}),
    (call(None), RAISE, {RE}),
    (call([]), RAISE, {RE}),
    (call([]), "def add(a, b):\n    raise SystemExit(1)\n", {RE}),
    (asserts("assert add(1, 2) is None\n"), RAISE, {RE}),
    (call([1, 2]), "def add(a, b):\n    return (a, b)\n", {V.PASSED}),
    (call(3), "import numpy as np\ndef add(a, b):\n    return np.int64(a + b)\n", {V.PASSED}),
    (call(0.5), "import numpy as np\ndef add(a, b):\n    return np.float64(a / b)\n", {V.PASSED}),
    (call([1, 2]), "import numpy as np\ndef add(a, b):\n    return np.array([a, b])\n", {V.PASSED}),
    (call([1, 2]), "def add(a, b):\n    return (x for x in (a, b))\n", {WA}),
    # a Decimal or Fraction crosses as the number it equals (Decimal(3) == 3, as in Python)
    (call(3), "from decimal import Decimal\ndef add(a, b):\n    return Decimal(a + b)\n", {V.PASSED}),
    (call(3), "from decimal import Decimal\ndef add(a, b):\n    return Decimal(a + b + 1)\n", {WA}),
    (call(0.5), "from fractions import Fraction\ndef add(a, b):\n    return Fraction(a, b)\n", {V.PASSED}),
    (call(float("nan")), "def add(a, b):\n    return float('nan')\n", {V.PASSED}),
    (call(float("inf")), "def add(a, b):\n    return float('inf')\n", {V.PASSED}),
    (call(7**6000), "def add(a, b):\n    return 7**6000\n", {V.PASSED}),
    (call(7**6000), "def add(a, b):\n    return 7**6000 - 1\n", {WA}),
    (call(True), "def add(a, b):\n    return 1\n", {WA}),
]


def test_c15_c16_call_based_values(executor):
    assert run_table(executor, C15_C16) == []


# --- C18-C20: compile errors, runtime errors at import, legitimate idioms --------------------------
C18_C20 = [(p, "def f(:\n    pass\n", {V.COMPILE_ERROR}) for p in (SUM, ADD, MBPP, HUMANEVAL)]
C18_C20 += [
    (SUM, "print(3\n", {V.COMPILE_ERROR}),
    (SUM, "x = 1\n\0\n", {V.COMPILE_ERROR}),
    (SUM, "x = " + "(" * 300 + ")" * 300 + "\n", {V.COMPILE_ERROR}),
]
C18_C20 += [(p, "import nonexistent_module_xyz\n" + WRONG_ADD, {RE}) for p in (SUM, ADD, MBPP, HUMANEVAL)]
C18_C20 += [(p, "raise RuntimeError('top level')\n", {RE}) for p in (SUM, ADD, MBPP)]
C18_C20 += [
    (SUM, "import sys\ndef main():\n    a, b = map(int, sys.stdin.readline().split())\n    print(a + b)\n"
     "if __name__ == '__main__':\n    main()\n", {V.PASSED}),
    (SUM, "import sys\na, b = map(int, sys.stdin.buffer.read().split())\n"
     "sys.stdout.buffer.write(b'%d\\n' % (a + b))\n", {V.PASSED}),
    (SUM, "a, b = map(int, open(0).read().split())\nprint(a + b)\n", {V.PASSED}),
    (SUM, "import sys\ninput = sys.stdin.readline\na, b = map(int, input().split())\nprint(a + b)\n",
     {V.PASSED}),
    (ADD, "class Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b\n", {V.PASSED}),
]  # fmt: skip


def test_c18_to_c20_compile_runtime_and_idioms(executor):
    assert run_table(executor, C18_C20) == []


def test_c21_correct_but_slow_program_passes_under_load(executor):
    # about 0.1 s of CPU each, next to a busy loop that holds the other sandbox for the whole limit
    slow_ok = (
        "x = 0\nfor i in range(10**6):\n    x += i\n" + "a, b = map(int, input().split())\nprint(a + b)\n"
    )
    busy = "while True:\n    pass\n"
    results = executor.execute_many([ExecutionItem(SUM, p) for p in (busy, slow_ok, slow_ok)])
    assert [r.verdict for r in results] == [V.TIMEOUT, V.PASSED, V.PASSED], results


# --- C22: infrastructure faults ------------------------------------------------------------------------
SLEEPY_SUM = "import time\ntime.sleep(1.0)\na, b = map(int, input().split())\nprint(a {} b)\n"


@pytest.mark.parametrize(("op", "verdict"), [("+", V.PASSED), ("-", WA)], ids=["correct", "wrong"])
def test_c22_container_killed_mid_run_is_retried(make_executor, container_killer, op, verdict):
    # The container running the program is killed from outside (docker kill, found by the
    # executor's label) once: an infrastructure fault, retried on a fresh sandbox, never scored.
    with make_executor(workers=1) as ex:
        with container_killer(ex, 1) as killer:
            res = ex.execute(SUM, SLEEPY_SUM.format(op))
        assert len(killer.killed) == 1, "the container was never killed"
        assert res.verdict == verdict, res
        assert res.attempts == 2, res
        assert ex.counters["sandbox_retries"] == 1, ex.counters
        assert ex.execute(SUM, SLEEPY_SUM.format("+")).verdict == V.PASSED


def test_c22_a_fault_that_follows_one_program_is_its_runtime_error(make_executor, container_killer):
    # Every attempt's container dies while this program runs, and a control program then runs
    # fine: whatever killed them, the fault goes with the program. It is scored as a runtime
    # error (not dropped as SANDBOX_ERROR, which an RL policy could learn to provoke); outages
    # that fail the control program too stay SANDBOX_ERROR (tests/unit/test_engine_faults.py).
    with make_executor(workers=1) as ex:
        with container_killer(ex, ex.config.max_attempts) as killer:
            res = ex.execute(SUM, SLEEPY_SUM.format("+"))
        assert len(killer.killed) == ex.config.max_attempts, killer.killed
        assert res.verdict == V.RUNTIME_ERROR, res
        assert res.error.type == "SandboxFault", res
        assert res.attempts == ex.config.max_attempts, res
        assert ex.counters["sandbox_faults_scored"] == 1, ex.counters
        assert ex.execute(SUM, SLEEPY_SUM.format("+")).verdict == V.PASSED
