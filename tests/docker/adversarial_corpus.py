"""Problems shared by the adversarial suites: a stdio sum and a call-based add."""

from __future__ import annotations

from problems import Problem, TestCase

SUM = Problem(task_id="sum", statement="", hidden_tests=[TestCase(kind="stdio", stdin="1 2\n", stdout="3\n")])
ADD = Problem(
    task_id="add", statement="", fn_name="add", hidden_tests=[TestCase(kind="call", args=[1, 2], expected=3)]
)
SUM_OK = "a, b = map(int, input().split())\nprint(a + b)\n"
