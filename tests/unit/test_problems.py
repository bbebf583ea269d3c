"""Problem-format loaders: APPS, MBPP, HumanEval, native JSONL and auto-detection."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from problems import (
    CompareOptions,
    Problem,
    ProblemFormatError,
    TestCase,
    load_apps,
    load_humaneval,
    load_mbpp,
    load_native_jsonl,
    load_packaged_humaneval,
    load_problems,
    load_problems_by_id,
    save_native_jsonl,
)
from problems import TestKind as Kind  # aliased, or pytest tries to collect it
from problems.apps import load_apps_problem, statement_says_case_insensitive
from problems.humaneval import doctest_examples
from problems.mbpp import called_function
from problems.native import iter_json_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
APPS_TRAIN = FIXTURES / "apps" / "train"
MBPP = FIXTURES / "mbpp_sample.jsonl"
HUMANEVAL = FIXTURES / "humaneval_sample.jsonl.gz"


def stdio(stdin: str, stdout: str) -> TestCase:
    return TestCase(kind=Kind.STDIO, stdin=stdin, stdout=stdout)


def call(args: list[Any], expected: Any) -> TestCase:
    return TestCase(kind=Kind.CALL, args=args, expected=expected)


def asserting(code: str) -> TestCase:
    return TestCase(kind=Kind.ASSERT, code=code)


# ---------------------------------------------------------------- APPS


def test_apps_split_loads_every_problem_in_order() -> None:
    problems = load_apps(APPS_TRAIN)
    assert [p.task_id for p in problems] == ["0000", "0001", "0002", "0003"]
    assert {p.source for p in problems} == {"apps"}


def test_apps_stdio_problem() -> None:
    p = load_apps(APPS_TRAIN)[0]
    assert p.statement.startswith("You are given two integers $a$ and $b$. Print their sum.\n")
    assert p.fn_name is None and p.starter_code == "" and p.example_tests == []
    # list-valued inputs/outputs are joined with "\n" as APPS's harness does
    assert p.hidden_tests == [
        stdio("1 2\n", "3\n"),
        stdio("10 -3\n", "7\n"),
        stdio("1000000000\n1000000000", "2000000000"),
    ]
    assert p.difficulty == "introductory"
    assert p.metadata == {"url": "https://codeforces.com/gym/100000/problem/A"}
    assert len(p.solutions) == 2 and p.solutions[0].startswith("a, b = map(int, open(0)")
    assert p.compare == CompareOptions()


def test_apps_call_problem_keeps_wrapped_outputs_raw() -> None:
    p = load_apps(APPS_TRAIN)[1]
    assert p.fn_name == "add"
    assert p.starter_code == "def add(a, b):\n\t"
    assert p.hidden_tests == [call([1, 2], [3]), call([3, 4], [7]), call([-5, 5], [0])]
    assert p.solutions == ["def add(a, b):\n    return a + b", "add = lambda a, b: a + b"]
    assert p.difficulty == "introductory"


def test_apps_leetcode_problem() -> None:
    p = load_apps(APPS_TRAIN)[2]
    assert p.fn_name == "maxProfit"
    assert p.starter_code.startswith("class Solution:\n    def maxProfit(self, prices: List[int]) -> int:")
    assert p.hidden_tests == [call([[7, 1, 5, 3, 6, 4]], 5), call([[7, 6, 4, 3, 1]], 0)]
    assert p.difficulty == "interview"
    assert p.metadata["url"] == "https://leetcode.com/problems/best-time-to-buy-and-sell-stock/"


def test_apps_example_tests_and_case_insensitive_statement() -> None:
    p = load_apps(APPS_TRAIN)[3]
    assert p.example_tests == [stdio("3\n1 2 3\n", "YES\n"), stdio("2\n1 2\n", "NO\n")]
    assert len(p.hidden_tests) == 4 and p.hidden_tests[2] == stdio("1\n100\n", "YES\n")
    assert p.tests("all")[:2] == p.example_tests
    assert p.compare.case_sensitive is False


def test_apps_single_problem_folder() -> None:
    (p,) = load_apps(APPS_TRAIN / "0001")
    assert p == load_apps(APPS_TRAIN)[1]
    assert load_apps_problem(APPS_TRAIN / "0001") == p


def test_apps_missing_input_output_warns_and_has_no_hidden_tests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "4000"
    folder.mkdir()
    (folder / "question.txt").write_text("Print 42.\n")
    with caplog.at_level(logging.WARNING, logger="problems.apps"):
        (p,) = load_apps(folder)
    assert p.task_id == "4000" and p.hidden_tests == [] and p.solutions == [] and p.difficulty is None
    assert "4000" in caplog.text and "input_output.json" in caplog.text


def test_apps_null_example_file_means_no_examples(tmp_path: Path) -> None:
    folder = tmp_path / "0007"
    shutil.copytree(APPS_TRAIN / "0000", folder)
    (folder / "example_input_output.json").write_text("null")
    assert load_apps(folder)[0].example_tests == []


@pytest.mark.parametrize(
    ("statement", "insensitive"),
    [
        ("You can print each letter in any case (upper or lower).", True),
        ('"yEs", "yes" and "YES" will all be recognized as positive answer.', True),
        ("The checker is case-insensitive.", True),
        ("Print the answer in lower case.", False),
        ("In any case, print -1.", False),
        ("You can output the answer in any case (upper or lower).", True),
        ("Each letter of the answer may be printed in arbitrary case.", True),
        ("The case of the output does not matter.", True),
        # about the input, or not about the output at all: case still matters
        ("The input letters may be in any case.", False),
        ("The given string consists of letters in any case. Print it reversed.", False),
        ("Letters in the names can be in any case.", False),
        ("Names are case-insensitive: read them and print the most common one.", False),
        ("The strings are given in any case; print YES or NO.", False),
    ],
)
def test_case_insensitive_detection(statement: str, insensitive: bool) -> None:
    assert statement_says_case_insensitive(statement) is insensitive


# ---------------------------------------------------------------- MBPP


def test_mbpp_sample() -> None:
    problems = load_mbpp(MBPP)
    assert [p.task_id for p in problems] == ["11", "2", "905", "17"]
    p = problems[0]
    assert p.source == "mbpp"
    # the zero-shot prompt: the description, the example asserts and the signature they call
    assert p.statement == (
        "Write a python function to remove first and last occurrence of a given character from the string."
        "\nYour code should pass these tests:\n"
        'assert remove_Occ("hello","l") == "heo"\n'
        'assert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"'
    )
    assert p.starter_code == "def remove_Occ(s, ch):"
    assert p.fn_name == "remove_Occ"
    assert p.example_tests == [
        asserting('assert remove_Occ("hello","l") == "heo"'),
        asserting('assert remove_Occ("abcda","a") == "bcd"'),
        asserting('assert remove_Occ("PHP","P") == "H"'),
    ]
    assert p.hidden_tests == [
        *p.example_tests,
        asserting('assert remove_Occ("hellolloll","l") == "helollol"'),
        asserting('assert remove_Occ("","l") == ""'),
    ]
    assert p.setup_code == "" and p.completion_prefix == ""
    assert len(p.solutions) == 1 and p.solutions[0].startswith("def remove_Occ(s,ch): \r\n")
    # the builtin set() and the setup's Counter() are skipped when finding the tested function
    assert problems[1].fn_name == "similar_elements"
    assert problems[2].fn_name == "count_chars"
    assert problems[2].setup_code == "from collections import Counter"
    assert len(problems[3].hidden_tests) == 5 and len(problems[3].example_tests) == 3


def test_mbpp_sanitized_variant(tmp_path: Path) -> None:
    record = {
        "source_file": "Benchmark Questions Verification V2.ipynb",
        "task_id": 3,
        "prompt": "Write a python function to identify non-prime numbers.",
        "code": "import math\ndef is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in range(2, n))",
        "test_imports": ["import math", "import re"],
        "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
    }
    path = tmp_path / "sanitized-mbpp.json"
    path.write_text(json.dumps([record], indent=4))
    (p,) = load_problems(path)
    assert p.task_id == "3" and p.source == "mbpp"
    assert p.statement == (
        "Write a python function to identify non-prime numbers.\nYour code should pass these tests:\n"
        "assert is_not_prime(2) == False\nassert is_not_prime(10) == True"
    )
    assert p.starter_code == "def is_not_prime(n):"
    assert p.setup_code == "import math\nimport re\n"
    assert p.fn_name == "is_not_prime"
    assert p.hidden_tests == p.example_tests and len(p.hidden_tests) == 2
    assert p.metadata == {"source_file": "Benchmark Questions Verification V2.ipynb"}


@pytest.mark.parametrize(
    ("line", "fn_name"),
    [
        ("assert math.isclose(area(2), 12.56, rel_tol=0.01)", "area"),
        ("assert abs(f(1) - 2) < 1e-9", "f"),
        ("assert sorted(x) == [1]", None),
        ("assert (", None),
    ],
)
def test_mbpp_called_function(line: str, fn_name: str | None) -> None:
    assert called_function(line) == fn_name


# ---------------------------------------------------------------- HumanEval


def test_humaneval_sample() -> None:
    problems = load_humaneval(HUMANEVAL)
    assert [p.task_id for p in problems] == ["HumanEval/0", "HumanEval/2", "HumanEval/12"]
    p = problems[1]
    assert p.source == "humaneval" and p.fn_name == "truncate_number"
    assert p.statement == p.completion_prefix and p.statement.startswith("\n\ndef truncate_number(")
    assert p.solutions == [p.statement + "    return number % 1.0\n"]
    assert p.example_tests == [asserting("assert (truncate_number(3.5)) == (0.5)")]
    (hidden,) = p.hidden_tests
    assert hidden.kind == Kind.ASSERT and hidden.code is not None
    assert hidden.code.startswith("\n\nMETADATA = {") and hidden.code.endswith("\ncheck(truncate_number)\n")
    assert problems[0].example_tests == [
        asserting("assert (has_close_elements([1.0, 2.0, 3.0], 0.5)) == (False)"),
        asserting("assert (has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)) == (True)"),
    ]
    # `>>> longest([])` is followed by a blank line (None prints nothing): skipped
    assert [t.code for t in problems[2].example_tests] == [
        "assert (longest(['a', 'b', 'c'])) == ('a')",
        "assert (longest(['a', 'bb', 'ccc'])) == ('ccc')",
    ]


def test_doctest_examples_skip_non_literals() -> None:
    prompt = (
        '    """\n    >>> f(1)\n    <object>\n    >>> x = 2\n    3\n'
        "    >>> g(\n    ...  1)\n    2\n    >>> h()\n    [1, 2]\n"
    )
    assert doctest_examples(prompt) == [("h()", "[1, 2]")]


def test_packaged_humaneval() -> None:
    problems = load_packaged_humaneval()
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    for p in problems:
        (hidden,) = p.hidden_tests
        assert hidden.code is not None and hidden.code.rstrip().endswith(f"check({p.fn_name})")
        assert p.completion_prefix == p.statement and p.solutions[0].startswith(p.statement)
    assert sum(len(p.example_tests) for p in problems) > 100


# ---------------------------------------------------------------- native and auto-detection


def all_fixture_problems() -> list[Problem]:
    return load_apps(APPS_TRAIN) + load_mbpp(MBPP) + load_humaneval(HUMANEVAL)


@pytest.mark.parametrize("name", ["problems.jsonl", "problems.jsonl.gz"])
def test_native_round_trip(tmp_path: Path, name: str) -> None:
    problems = all_fixture_problems()
    path = tmp_path / "sub" / name
    save_native_jsonl(problems, path)
    assert load_native_jsonl(path) == problems
    assert load_problems(path) == problems
    assert [p.name for p in path.parent.iterdir()] == [name]


@pytest.mark.parametrize(
    ("path", "source", "count"),
    [
        (APPS_TRAIN, "apps", 4),
        (APPS_TRAIN / "0002", "apps", 1),
        (MBPP, "mbpp", 4),
        (HUMANEVAL, "humaneval", 3),
        ("humaneval", "humaneval", 164),
    ],
)
def test_load_problems_detects_format(path: str | Path, source: str, count: int) -> None:
    problems = load_problems(path)
    assert len(problems) == count and {p.source for p in problems} == {source}
    by_id = load_problems_by_id(path)
    assert list(by_id) == [p.task_id for p in problems]


def test_load_problems_plain_humaneval_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "he.jsonl"
    path.write_bytes(gzip.decompress(HUMANEVAL.read_bytes()))
    assert load_problems(path) == load_humaneval(HUMANEVAL)


def test_unknown_format_lists_understood_formats(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"question": "q", "answer": 1}\n')
    with pytest.raises(ProblemFormatError, match=r"other\.jsonl") as info:
        load_problems(path)
    for fmt in ("humaneval", "APPS", "MBPP", "native"):
        assert fmt in str(info.value)
    with pytest.raises(ProblemFormatError, match="understood formats"):
        load_problems(tmp_path / "notes.txt")
    with pytest.raises(ProblemFormatError, match="no such file"):
        load_problems(tmp_path / "missing.jsonl")


def test_duplicate_task_ids(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    line = MBPP.read_text().splitlines()[0]
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(ProblemFormatError, match=r"dup\.jsonl, problem 11, field 'task_id': duplicate"):
        load_problems_by_id(path)


# ---------------------------------------------------------------- malformed input


def _apps_copy(tmp_path: Path, task: str, file: str, content: Any) -> Path:
    folder = tmp_path / task
    shutil.copytree(APPS_TRAIN / task, folder)
    (folder / file).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def _assert_names(error: ProblemFormatError, file: str, problem: str, field: str) -> None:
    message = str(error)
    assert file in message and f"problem {problem}" in message and f"field {field!r}" in message
    assert (Path(error.path).name, error.problem, error.field) == (file, problem, field)


@pytest.mark.parametrize(
    ("task", "file", "content", "field"),
    [
        ("0000", "input_output.json", {"inputs": ["1 2\n"], "outputs": []}, "outputs"),  # length mismatch
        ("0000", "input_output.json", {"inputs": ["1 2\n"]}, "outputs"),
        ("0000", "input_output.json", {"inputs": [12], "outputs": ["12"]}, "inputs[0]"),
        ("0001", "input_output.json", {"fn_name": "add", "inputs": [3], "outputs": [3]}, "inputs[0]"),
        ("0001", "input_output.json", {"fn_name": 1, "inputs": [], "outputs": []}, "fn_name"),
        ("0001", "solutions.json", ["def add(a, b): return a + b", 7], "solutions[1]"),
        ("0002", "metadata.json", {"difficulty": 3}, "difficulty"),
    ],
)
def test_malformed_apps(tmp_path: Path, task: str, file: str, content: Any, field: str) -> None:
    with pytest.raises(ProblemFormatError) as info:
        load_problems(_apps_copy(tmp_path, task, file, content))
    _assert_names(info.value, file, task, field)


@pytest.mark.parametrize(
    ("fixture", "change", "field"),
    [
        (MBPP, {"code": None}, "code"),
        (MBPP, {"test_list": "assert remove_Occ('a', 'a') == ''"}, "test_list"),
        (MBPP, {"challenge_test_list": [None]}, "challenge_test_list[0]"),
        (MBPP, {"test_setup_code": ["import re"]}, "test_setup_code"),
        (HUMANEVAL, {"entry_point": None}, "entry_point"),
        (HUMANEVAL, {"test": ["assert True"]}, "test"),
    ],
)
def test_malformed_records(tmp_path: Path, fixture: Path, change: dict[str, Any], field: str) -> None:
    text = gzip.decompress(fixture.read_bytes()).decode() if fixture.suffix == ".gz" else fixture.read_text()
    record = json.loads(text.splitlines()[0]) | change
    missing = [key for key, value in change.items() if value is None]
    for key in missing:  # a missing key the format is sniffed by: call the loader directly
        del record[key]
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record) + "\n")
    loader = (load_mbpp if fixture == MBPP else load_humaneval) if missing else load_problems
    with pytest.raises(ProblemFormatError) as info:
        loader(path)
    _assert_names(info.value, "records.jsonl", "11" if fixture == MBPP else "HumanEval/0", field)


def test_native_invalid_record_names_problem_and_field(tmp_path: Path) -> None:
    record = json.loads(load_mbpp(MBPP)[0].model_dump_json())
    record["hidden_tests"][1] = {"kind": "stdio", "stdin": "1\n"}
    path = tmp_path / "native.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ProblemFormatError, match=r"native\.jsonl, problem 11, field 'hidden_tests\.1'"):
        load_problems(path)


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"task_id": 1, "text": "x"\n', "line 1: invalid JSON"),
        ('\n{"a": 1}\n\n[1, 2]\n', "line 4: expected an object, got array"),
    ],
)
def test_bad_json_lines(tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(content)
    with pytest.raises(ProblemFormatError, match=rf"broken\.jsonl: {where}"):
        list(iter_json_records(path))


def test_apps_bad_json_names_file_and_problem(tmp_path: Path) -> None:
    folder = _apps_copy(tmp_path, "0003", "example_input_output.json", '{"inputs": [')
    with pytest.raises(
        ProblemFormatError, match=r"0003.example_input_output\.json, problem 0003: invalid JSON"
    ):
        load_problems(folder)


# ---------------------------------------------------------------- the fixtures' solutions are correct


def _run_call(program: str, fn_name: str, args: list[Any]) -> Any:
    namespace: dict[str, Any] = {}
    exec("from typing import List\n" + program, namespace)  # APPS's harness provides typing names
    fn = getattr(namespace["Solution"](), fn_name) if "Solution" in namespace else namespace[fn_name]
    return fn(*args)


def test_fixture_solutions_pass_their_tests() -> None:
    for p in all_fixture_problems():
        for program in p.solutions:
            for test in p.tests("all"):
                if test.kind == Kind.STDIO:
                    run = subprocess.run(
                        [sys.executable, "-c", program], input=test.stdin, capture_output=True, text=True
                    )
                    assert run.stdout.split() == (test.stdout or "").split(), (p.task_id, test)
                elif test.kind == Kind.CALL:
                    assert p.fn_name and test.args is not None
                    result = _run_call(program, p.fn_name, test.args)
                    assert result == test.expected or [result] == test.expected, (p.task_id, test)
                else:
                    exec(p.setup_code + "\n" + program + "\n" + (test.code or ""), {})


def test_json_file_with_one_pretty_printed_object(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(load_mbpp(MBPP)[1].model_dump_json(indent=2))
    assert load_problems(path) == [load_mbpp(MBPP)[1]]
