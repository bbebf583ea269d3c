"""CodeRL's prompt format and program extraction."""

from __future__ import annotations

from models.prompts import extract_program, format_prompt, uses_call_format
from problems import Problem, TestCase, load_problems

STDIO = Problem(
    task_id="s",
    statement="Add two numbers.",
    hidden_tests=[TestCase(kind="stdio", stdin="1 2\n", stdout="3\n")],
)
CALL = Problem(
    task_id="c",
    statement="Add two numbers.",
    fn_name="add",
    starter_code="def add(a, b):\n",
    hidden_tests=[TestCase(kind="call", args=[1, 2], expected=3)],
)


def test_standard_input_prompt_is_codes_rl_actor_format() -> None:
    assert format_prompt(STDIO) == "\nQUESTION:\nAdd two numbers.\n\n\nUse Standard Input format\n\nANSWER:\n"


def test_call_based_prompt_carries_the_starter_code() -> None:
    assert format_prompt(CALL) == (
        "\nQUESTION:\nAdd two numbers.\ndef add(a, b):\n\n\nUse Call-Based format\n\nANSWER:\n"
    )


def test_assert_tested_problems_use_the_call_format() -> None:
    mbpp_like = Problem(
        task_id="m", statement="x", hidden_tests=[TestCase(kind="assert", code="assert f() == 1")]
    )
    assert uses_call_format(mbpp_like)
    assert not uses_call_format(STDIO)
    assert all(uses_call_format(p) for p in load_problems("humaneval")[:5])


def test_bare_program_is_kept_with_one_trailing_newline() -> None:
    assert extract_program("print(1)\n\n\n") == "print(1)\n"
    assert extract_program("    x = 1\nprint(x)") == "    x = 1\nprint(x)\n"


def test_markdown_fence_and_echoed_prompt_are_removed() -> None:
    generation = "\nQUESTION:\nblah\nANSWER:\nHere you go:\n```python\nprint(2)\n```\nThat is all."
    assert extract_program(generation) == "print(2)\n"


def test_an_unclosed_fence_keeps_the_rest() -> None:
    assert extract_program("```python\nprint(3)\n") == "print(3)\n"


def test_an_invented_next_question_is_cut() -> None:
    assert extract_program("print(4)\n\nQUESTION:\nNext problem") == "print(4)\n"


def test_empty_generation_gives_an_empty_program() -> None:
    assert extract_program("") == ""
    assert extract_program("\n\n  \n") == ""
