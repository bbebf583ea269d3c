"""CodeRL's example tests of call-based APPS problems, which its notebook extracted as raw text.

For a call-based (LeetCode-style) problem, CodeRL's ``example_input_output.json`` holds strings
such as ``" nums = [5,7,7,8,8,10], target = 8\\n"`` with outputs like ``" [3,4]\\n"`` or
``"1\\nExplanation: ..."``. CodeRL's harness passes such a string to ``method(*inputs)``, which
unpacks it character by character, so its example-test feedback is broken for these problems.
Here the text is parsed into arguments and an expected value; an example that does not parse is
dropped (and counted), never run as garbage.

Only Python literals are accepted (``ast.literal_eval``, plus JSON's true/false/null): nothing in
the text is executed.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["parameter_names", "parse_call_example"]

_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}
_JSON_WORD = re.compile(r"\b(true|false|null)\b")
_EXPLANATION = re.compile(r"\n\s*(?:Explanation|Note|Constraints)\b.*", re.DOTALL | re.IGNORECASE)
_ASSIGNMENTS_ON_LINES = re.compile(r"\n\s*(?=[A-Za-z_]\w*\s*=(?!=))")


def _literal(text: str) -> Any:
    """A Python (or JSON-spelled) literal; ValueError when ``text`` is none."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    spelled = _JSON_WORD.sub(lambda m: _JSON_WORDS[m.group(1)], text)
    try:
        return ast.literal_eval(spelled)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a literal: {text[:60]!r}") from exc


def parameter_names(starter_code: str, fn_name: str) -> list[str] | None:
    """The parameters of ``fn_name`` in a starter code (``self`` dropped), or None when the starter
    code does not define it. LeetCode starter code has no bodies, so ``pass`` is added to each
    ``def`` line before parsing."""
    completed = re.sub(r"(def [^\n]*:)[ \t]*$", r"\1 pass", starter_code, flags=re.MULTILINE)
    try:
        tree = ast.parse(completed)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == fn_name:
            names = [arg.arg for arg in node.args.posonlyargs + node.args.args]
            return names[1:] if names[:1] == ["self"] else names
    return None


def _arguments(text: str, parameters: list[str] | None) -> list[Any]:
    """``a = 1, b = [2]`` (or one assignment per line), or bare literals one per line."""
    text = text.strip()
    joined = _ASSIGNMENTS_ON_LINES.sub(", ", text)
    try:
        call = ast.parse(f"f({_JSON_WORD.sub(lambda m: _JSON_WORDS[m.group(1)], joined)})", mode="eval")
    except SyntaxError:
        call = None
    if isinstance(call, ast.Expression) and isinstance(call.body, ast.Call):
        node = call.body
        if node.keywords and not node.args and all(k.arg for k in node.keywords):
            named = {str(k.arg): ast.literal_eval(k.value) for k in node.keywords}
            if parameters is not None and set(named) == set(parameters):
                return [named[name] for name in parameters]
            return list(named.values())
    return [_literal(line) for line in text.splitlines() if line.strip()]


def parse_call_example(given: str, wanted: str, parameters: list[str] | None) -> tuple[list[Any], Any]:
    """(positional arguments, expected return value) of one textual example; ValueError when the
    text is not literals. Named arguments are put in the order of ``parameters`` when the names
    match the starter code's; the expected value is the first line before any explanation."""
    try:
        args = _arguments(given, parameters)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"input is not arguments: {given.strip()[:60]!r}") from exc
    if not args:
        raise ValueError("input holds no arguments")
    answer = _EXPLANATION.sub("", wanted).strip()
    if not answer:
        raise ValueError("output is empty")
    try:
        return args, _literal(answer)
    except ValueError:
        return args, _literal(answer.splitlines()[0])  # a value, then prose on the next lines
