"""The workload of the executor service benchmark: for each HumanEval problem its canonical
solution and a wrong program, ``completion_prefix + "    return None"``, cycled up to N programs."""

from __future__ import annotations

from dataclasses import dataclass

from problems import Problem, load_problems


@dataclass(frozen=True)
class Job:
    """One program of the return-None workload."""

    index: int
    problem: Problem
    program: str
    label: str

    @property
    def key(self) -> str:
        return f"{self.problem.task_id}[{self.label}]"


def build_return_none_workload(n: int) -> list[Job]:
    """canonical, wrong, canonical, wrong, ... over the 164 HumanEval problems, cycled up to n."""
    base: list[tuple[Problem, str, str]] = []
    for problem in load_problems("humaneval"):
        base.append((problem, problem.solutions[0], "canonical"))
        base.append((problem, problem.completion_prefix + "    return None\n", "wrong"))
    jobs = []
    for index in range(n):
        problem, program, label = base[index % len(base)]
        lap = index // len(base)
        jobs.append(Job(index, problem, program, label if lap == 0 else f"{label}#{lap}"))
    return jobs
