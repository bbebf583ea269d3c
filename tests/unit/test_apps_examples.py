"""CodeRL's textual example tests of call-based APPS problems: parsed into arguments, never run as
character lists (problems/apps_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderl.problem import TestKind
from problems import load_apps_problem
from problems.apps_examples import parameter_names, parse_call_example

APPS_TRAIN = Path(__file__).resolve().parents[1] / "fixtures" / "apps" / "train"

STARTER = "class Solution:\n    def searchRange(self, nums: List[int], target: int) -> List[int]:\n        "


def test_parameter_names_of_leetcode_starter_code() -> None:
    assert parameter_names(STARTER, "searchRange") == ["nums", "target"]
    assert parameter_names("def add(a, b):\n", "add") == ["a", "b"]
    assert parameter_names(STARTER, "other") is None
    assert parameter_names("class (", "f") is None


@pytest.mark.parametrize(
    ("given", "wanted", "args", "expected"),
    [
        # the forms of CodeRL's released files (problems 2470, 2634, 2745, 2747)
        (" nums = [5,7,7,8,8,10], target = 8\n", " [3,4]\n", [[5, 7, 7, 8, 8, 10], 8], [3, 4]),
        (" target = 6, nums = []\n", " [-1,-1]\n", [[], 6], [-1, -1]),  # put in the starter's order
        (" nums = [1]\n target = 1\n", "1\nExplanation: the only one.\n", [[1], 1], 1),
        (' s = "abc", k = 2\n', " true\n", ["abc", 2], True),
        (" [7,1,5,3,6,4]\n", " 5\nExplanation: buy low.", [[7, 1, 5, 3, 6, 4]], 5),
        ("[1, null]\n3", '"x"', [[1, None], 3], "x"),
    ],
)
def test_parse_call_example(given: str, wanted: str, args: list[object], expected: object) -> None:
    assert parse_call_example(given, wanted, ["nums", "target"]) == (args, expected)


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        ("Input: root = a tree drawn above", "3"),
        ("nums = [1, 2", "3"),
        ("nums = [1]", "   \n"),
        ("nums = [1]", "the answer is three"),
        ("nums = __import__('os').system('true')", "0"),  # literals only: nothing is executed
    ],
)
def test_unparseable_examples_raise(given: str, wanted: str) -> None:
    with pytest.raises(ValueError):
        parse_call_example(given, wanted, None)


def test_coderl_example_file_of_a_call_based_problem_loads() -> None:
    problem = load_apps_problem(APPS_TRAIN / "0002")
    assert problem.fn_name == "maxProfit"
    assert [(t.kind, t.args, t.expected) for t in problem.example_tests] == [
        (TestKind.CALL, [[7, 1, 5, 3, 6, 4]], 5),
        (TestKind.CALL, [[7, 6, 4, 3, 1]], 0),
    ]


def test_an_unparseable_example_is_dropped_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "2470"
    folder.mkdir()
    (folder / "question.txt").write_text("Find the range.")
    (folder / "starter_code.py").write_text(STARTER)
    (folder / "input_output.json").write_text(
        '{"fn_name": "searchRange", "inputs": [[[5, 7], 7]], "outputs": [[[1, 1]]]}'
    )
    (folder / "example_input_output.json").write_text(
        '{"inputs": [" nums = [5,7,7,8,8,10], target = 8\\n", "see the picture"], '
        '"outputs": [" [3,4]\\n", " [0,0]\\n"]}'
    )
    problem = load_apps_problem(folder)
    assert [(t.args, t.expected) for t in problem.example_tests] == [([[5, 7, 7, 8, 8, 10], 8], [3, 4])]
