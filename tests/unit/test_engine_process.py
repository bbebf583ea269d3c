"""The whole executor path on the (weaker) process backend: no Docker needed, so the fast tier
still runs every problem format and test kind end to end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coderl.outcomes import InfrastructureFault, Verdict
from coderl.outcomes import reward as coderl_reward
from executor import ExecutionItem, Executor, ExecutorConfig, LimitsConfig, SandboxConfig
from problems import Problem, TestCase, load_problems


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    config = ExecutorConfig(
        workers=2, sandbox=SandboxConfig(backend="process"), limits=LimitsConfig(timeout_s=1.0, memory_mb=512)
    )
    with Executor(config) as ex:
        yield ex


def test_fixture_solutions_pass_in_every_format(executor: Executor) -> None:
    problems = (
        load_problems("tests/fixtures/apps/train")
        + load_problems("tests/fixtures/mbpp_sample.jsonl")
        + load_problems("tests/fixtures/humaneval_sample.jsonl.gz")
    )
    items = [ExecutionItem(p, p.solutions[0], which="all") for p in problems]
    results = executor.execute_many(items)
    assert [(p.task_id, r.verdict) for p, r in zip(problems, results, strict=True)] == [
        (p.task_id, Verdict.PASSED) for p in problems
    ]


def test_packaged_humaneval_canonical_pass_and_broken_fail(executor: Executor) -> None:
    problems = load_problems("humaneval")[:20]
    good = [ExecutionItem(p, p.solutions[0]) for p in problems]
    wrong = [ExecutionItem(p, p.completion_prefix + "    return None\n") for p in problems]
    results = executor.execute_many(good + wrong)
    assert all(r.verdict == Verdict.PASSED for r in results[:20])
    assert all(r.verdict in (Verdict.FAILED_TEST, Verdict.RUNTIME_ERROR) for r in results[20:])


STDIO = Problem(
    task_id="sum",
    statement="print a+b",
    hidden_tests=[
        TestCase(kind="stdio", stdin="1 2\n", stdout="3\n"),
        TestCase(kind="stdio", stdin="5 5\n", stdout="10\n"),
    ],
)


@pytest.mark.parametrize(
    ("program", "verdict", "reward", "error_type"),
    [
        ("a, b = map(int, input().split())\nprint(a + b)", Verdict.PASSED, 1.0, None),
        ("a, b = map(int, input().split())\nprint(a - b)", Verdict.FAILED_TEST, -0.3, "WrongAnswer"),
        ("print(undefined)", Verdict.RUNTIME_ERROR, -0.6, "NameError"),
        ("def f(:\n", Verdict.COMPILE_ERROR, -1.0, "SyntaxError"),
        ("while True:\n    pass", Verdict.TIMEOUT, -0.6, "Timeout"),
        ("x = bytearray(4 << 30)", Verdict.MEMORY_LIMIT, -0.6, "MemoryLimit"),
        ("import sys\nprint(3)\nsys.exit(1)", Verdict.RUNTIME_ERROR, -0.6, "NonZeroExit"),
    ],
)
def test_stdio_verdicts_and_rewards(
    executor: Executor, program: str, verdict: Verdict, reward: float, error_type: str | None
) -> None:
    result = executor.execute(STDIO, program)
    assert result.verdict == verdict
    assert coderl_reward(result.verdict) == reward  # CodeRL's reward of the verdict
    assert (result.error.type if result.error else None) == error_type
    if verdict != Verdict.PASSED:
        assert len(result.tests) == 1  # stops at the first failure
        assert result.error is not None and result.error.test_index == 0


def test_call_based_leetcode_style_with_apps_prelude(executor: Executor) -> None:
    problem = Problem(
        task_id="two",
        statement="",
        source="apps",
        fn_name="twoSum",
        hidden_tests=[TestCase(kind="call", args=[[2, 7, 11, 15], 9], expected=[[0, 1]])],
    )
    program = (
        "class Solution:\n"
        "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)\n"
        "            seen[x] = i\n"
    )
    assert executor.execute(problem, program).verdict == Verdict.PASSED


def test_assert_tests_cannot_be_forged_in_process(executor: Executor) -> None:
    problem = Problem(
        task_id="add", statement="", hidden_tests=[TestCase(kind="assert", code="assert add(1, 2) == 3")]
    )
    forgeries = [
        "import sys\nsys.exit(0)\ndef add(a, b): return a + b",
        "class Yes:\n    def __eq__(self, other): return True\ndef add(a, b): return Yes()",
        "import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\ndef add(a, b): return 0",
        "import os\ndef add(a, b): os._exit(0)",
    ]
    verdicts = [executor.execute(problem, program).verdict for program in forgeries]
    assert verdicts == [Verdict.FAILED_TEST] * 4
    assert executor.execute(problem, "def add(a, b): return a + b").verdict == Verdict.PASSED


def test_problem_without_tests_is_a_sandbox_error_not_a_pass(executor: Executor) -> None:
    result = executor.execute(Problem(task_id="empty", statement=""), "print(1)")
    assert result.verdict == Verdict.SANDBOX_ERROR
    with pytest.raises(InfrastructureFault):
        coderl_reward(result.verdict)


SCHEDULING = Problem(
    task_id="scheduling",
    statement="",
    hidden_tests=[TestCase(kind="stdio", stdin="", stdout="0 0\n")],
)
OWN_SCHEDULING = "import os\nprint(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))\n"
# On the process backend the program shares the zygote's uid and can reschedule it: the harness's
# fingerprint (limits, nice, scheduling policy, I/O priority, affinity) catches it and the sandbox
# is replaced before another program starts there.
RESCHEDULE_ZYGOTE = {
    "sched-idle": "import os\nos.sched_setscheduler(os.getppid(), os.SCHED_IDLE, os.sched_param(0))\n",
    "sched-batch": "import os\nos.sched_setscheduler(os.getppid(), os.SCHED_BATCH, os.sched_param(0))\n",
    "io-idle": "import ctypes, os, platform\nn = {'x86_64': 251, 'aarch64': 30}[platform.machine()]\n"
    "assert ctypes.CDLL(None).syscall(n, 1, os.getppid(), 3 << 13) == 0\n",
    "renice": "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 5)\n",
}


@pytest.mark.parametrize("attack", RESCHEDULE_ZYGOTE.values(), ids=RESCHEDULE_ZYGOTE.keys())
def test_rescheduled_harness_is_replaced(attack: str) -> None:
    config = ExecutorConfig(
        workers=1, sandbox=SandboxConfig(backend="process"), limits=LimitsConfig(timeout_s=1.0)
    )
    with Executor(config) as ex:
        first = ex.execute(SCHEDULING, attack + OWN_SCHEDULING)
        later = [ex.execute(SCHEDULING, OWN_SCHEDULING) for _ in range(2)]
        recycles = ex.pool.counters["sandbox_recycles"]
    assert first.verdict == Verdict.PASSED, first.error
    assert [r.verdict for r in later] == [Verdict.PASSED] * 2, [r.error for r in later]
    assert recycles == 1
