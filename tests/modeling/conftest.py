"""Fixtures for the model tests: tiny randomly initialised policies (no download) and toy problems."""

from __future__ import annotations

import pytest
import torch

from actors.config import PolicyConfig
from actors.policy import Policy
from critic.training import CriticExample
from problems import Problem, TestCase

torch.set_num_threads(min(2, torch.get_num_threads()))


def add_k_problem(k: int) -> Problem:
    """'Print n + k': a stdio problem whose solution a tiny byte-level model can memorise."""
    return Problem(
        task_id=f"add-{k}",
        statement=f"Read an integer n from standard input and print n plus {k}.",
        solutions=[f"n = int(input())\nprint(n + {k})\n"],
        hidden_tests=[
            TestCase(kind="stdio", stdin="3\n", stdout=f"{3 + k}\n"),
            TestCase(kind="stdio", stdin="-10\n", stdout=f"{-10 + k}\n"),
        ],
    )


@pytest.fixture(params=["tiny", "tiny-causal"])
def policy(request: pytest.FixtureRequest) -> Policy:
    """Each tiny preset: an encoder-decoder (T5) and a causal LM (GPT-2)."""
    return Policy.load(PolicyConfig(model=request.param, device="cpu"))


@pytest.fixture
def add_problems() -> list[Problem]:
    return [add_k_problem(k) for k in range(4)]


def labelled_solutions(policy: Policy, problems: list[Problem]) -> list[CriticExample]:
    """Each problem's first solution as a critic example, labelled 0, 1, 2, ... in turn: every class
    in a batch of four."""
    return [
        CriticExample(policy.prompt_token_ids(p), policy.program_token_ids(p.solutions[0]), label % 4)
        for label, p in enumerate(problems)
    ]
