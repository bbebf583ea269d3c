"""CodeRL's prompt format and program extraction, defined once.

The prompt is CodeRL's actor format (``datasets/apps_dataset.py``)::

    \\nQUESTION:\\n{statement}\\n{starter_code}\\n\\nUse {Standard Input|Call-Based} format\\n\\nANSWER:\\n

"Call-Based" is chosen when the program is called rather than run (APPS problems with ``fn_name``,
starter code, MBPP and HumanEval functions), as in APPS. The official code trains the actor with
this prompt but builds RL samples with a slightly different critic prompt; here both use this one.
"""

from __future__ import annotations

import re

from coderl.problem import Problem, TestKind

__all__ = ["ANSWER_MARKER", "extract_program", "format_prompt", "repair_problem", "uses_call_format"]

REPAIR_ERROR_CHARS = 400
"""an error message is cut to this many characters in a repair prompt (tracebacks run long)"""

ANSWER_MARKER = "\nANSWER:\n"
QUESTION_MARKER = "\nQUESTION:\n"

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


def uses_call_format(problem: Problem) -> bool:
    """True when the program is called (a function or method), False when it reads stdin."""
    if problem.fn_name or problem.starter_code.strip():
        return True
    tests = problem.tests("all")
    return bool(tests) and all(test.kind != TestKind.STDIO for test in tests)


def format_prompt(problem: Problem) -> str:
    """The prompt the policy continues with a program."""
    style = "Call-Based" if uses_call_format(problem) else "Standard Input"
    return (
        f"{QUESTION_MARKER}{problem.statement}\n{problem.starter_code}\n\nUse {style} format\n{ANSWER_MARKER}"
    )


def extract_program(generation: str) -> str:
    """The program in a decoded generation.

    Seq2seq models trained on this format emit the bare program. Causal models continue the whole
    prompt, may wrap code in a Markdown fence, and may go on to invent the next question: the
    text after an echoed answer marker is kept, the first fenced block wins when there is one,
    and anything from a new question marker on is cut.
    """
    text = generation
    if ANSWER_MARKER in text:
        text = text.split(ANSWER_MARKER, 1)[1]
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    text = text.split(QUESTION_MARKER, 1)[0]
    return text.strip("\n") + "\n" if text.strip() else ""


def repair_problem(
    problem: Problem, program: str, verdict: str, error_type: str, error_message: str
) -> Problem:
    """The problem as the repair model sees it (CodeRL's repair input: the problem D, the failed
    program W_fail, its error type u and error message c): the statement, then the failed program
    and what went wrong. The prompt keeps its end when cut, so the failed program and the error
    outlast the start of a long statement. Trained with ``coderl sft`` on such problems whose
    solutions are the correct programs."""
    error = f"{error_type}: {error_message}".strip(": ")[:REPAIR_ERROR_CHARS]
    statement = (
        f"{problem.statement.rstrip()}\n\nFAILED PROGRAM:\n{program.rstrip()}\n\n"
        f"RESULT: {verdict}{' (' + error + ')' if error else ''}\nFix the program."
    )
    return problem.model_copy(update={"statement": statement})
