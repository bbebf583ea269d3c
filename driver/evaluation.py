"""``coderl evaluate``'s configuration, records and report: what is written to ``--out`` and how
an interrupted evaluation resumes.

``--out`` holds:

    config.yaml      the resolved configuration
    samples.jsonl    every generated program: task_id, sample_id, origin (sampled, refined,
                     repaired), round, program, policy_version, finished
    results.jsonl    the same records with the tests' outcomes: example_verdict / example_passed
                     (null without example tests), verdict / passed (hidden tests), error_type,
                     error_message, difficulty
    summary.json     {"pass@k": {group: {"pass@1": ...}}, "n@k": {group: {"1@10": ...}},
                     "problems": {group: {"count": m}}, "critical_sampling": {...}}; groups are
                     ``all`` and each difficulty

A problem's records are appended in one write once all its N programs are judged, so a killed run
loses at most the problems in flight; ``--resume`` keeps the complete problems (N records each)
and drops a partial tail. Ray workers finish problems in any order: the records are appended as
they come and the files rewritten in the problems' order once the run is done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.config import RayResources, SamplingConfig
from coderl.passk import ALL, ProblemSamples, summarize
from coderl.problem import Problem
from models.prompts import repair_problem

from .critical_sampling import Candidate

__all__ = [
    "RESULTS_FILE",
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "CriticalConfig",
    "EvaluateConfig",
    "ResultLog",
    "WorkersConfig",
    "format_table",
    "repair_examples",
    "summary_of",
]

log = logging.getLogger(__name__)

SAMPLES_FILE, RESULTS_FILE, SUMMARY_FILE = "samples.jsonl", "results.jsonl", "summary.json"
_SAMPLE_KEYS = ("task_id", "sample_id", "origin", "round", "program", "policy_version", "finished")


class CriticalConfig(BaseModel):
    """Critical sampling (driver/critical_sampling.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    critic: str | None = None
    """a critic saved by coderl train (binary or outcome classes; the last class is 'passed')"""
    repair_model: str | None = None
    """a policy trained to repair (coderl sft on --repair-data pairs); None: the policy repairs"""
    rounds: int = Field(default=1, ge=1)
    """refine/repair rounds after the first sampling; the budget N is split evenly over them"""
    repair_top_m: int = Field(default=1, ge=1)
    """failed programs handed to the repair model (the paper: M = 1 works best)"""

    @model_validator(mode="after")
    def _needs_a_critic(self) -> CriticalConfig:
        if self.enabled and self.critic is None:
            raise ValueError("critical sampling needs a critic: give --critic DIR (or critical.critic)")
        return self


class WorkersConfig(BaseModel):
    """Who evaluates the problems: this process, or Ray actors (driver/evaluate_ray.py), each with
    its own models and executor, handed one problem at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    count: int = Field(default=1, ge=1)
    """evaluation workers (--workers); above 1 they are Ray actors"""
    ray: bool = False
    """run the workers as Ray actors even when count is 1 (--ray; also when RAY_ADDRESS is set)"""
    num_gpus: float = Field(default=0.0, ge=0)
    """GPUs per Ray worker (0: CPU, fractions share a GPU); ignored in-process"""
    resources: RayResources = Field(default_factory=dict)
    """custom Ray resources per worker, e.g. {eval_node = 1}: workers start only on nodes started
    with them (`ray start --resources '{"eval_node": 4}'`); ignored in-process"""


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n: int = Field(default=10, ge=1)
    """programs generated per problem, in every mode (critical sampling's rounds included)"""
    k: list[int] = Field(default_factory=lambda: [1, 5, 10, 100, 1000])
    """pass@k and n@k are reported for each k <= n"""
    n_at: list[int] = Field(default_factory=lambda: [1, 5])
    """submissions of the filtered n@k (the paper's 1@k and 5@k)"""
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95))
    critical: CriticalConfig = Field(default_factory=CriticalConfig)
    device: str = "auto"
    workers: WorkersConfig = Field(default_factory=WorkersConfig)

    @model_validator(mode="after")
    def _positive(self) -> EvaluateConfig:
        if not self.k or min(self.k) < 1 or not self.n_at or min(self.n_at) < 1:
            raise ValueError("k and n_at need positive integers, e.g. --k 1 5 10")
        return self


def _record(problem: Problem, candidate: Candidate) -> dict[str, Any]:
    sample, hidden, example = candidate.sample, candidate.hidden, candidate.example
    assert hidden is not None
    error = hidden.error if not hidden.passed else None
    return {
        "task_id": problem.task_id,
        "sample_id": sample.sample_id,
        "origin": candidate.origin,
        "round": candidate.round,
        "program": sample.program,
        "policy_version": sample.policy_version,
        "finished": sample.finished,
        "example_verdict": None if example is None else example.verdict.value,
        "example_passed": None if example is None else example.passed,
        "verdict": hidden.verdict.value,
        "passed": hidden.passed,
        "error_type": error.type if error else None,
        "error_message": error.message if error else None,
        "difficulty": problem.difficulty,
    }


class ResultLog:
    """The records of ``--out``, appended one problem at a time."""

    def __init__(self, out: Path, n: int, resume: bool) -> None:
        self.out, self.n = out, n
        self.samples, self.results = out / SAMPLES_FILE, out / RESULTS_FILE
        self.records: list[dict[str, Any]] = []
        if resume:
            self.records = self._complete_records()
            self._rewrite()
        elif self.results.exists():
            raise FileExistsError(
                f"{out} already holds results: pass --resume to go on, or choose another --out"
            )
        else:
            self._rewrite()

    @property
    def done(self) -> set[str]:
        return {r["task_id"] for r in self.records}

    def reorder(self, task_ids: Sequence[str]) -> None:
        """Rewrite the files with the problems in this order (each problem's records keep their
        generation order; tasks not listed go last): Ray workers finish problems in any order."""
        position = {task_id: index for index, task_id in enumerate(task_ids)}
        ordered = sorted(self.records, key=lambda r: position.get(r["task_id"], len(position)))
        if ordered != self.records:
            self.records = ordered
            self._rewrite()

    def add(self, problem: Problem, candidates: Sequence[Candidate]) -> None:
        records = [_record(problem, c) for c in candidates]
        _append(self.samples, [{key: r[key] for key in _SAMPLE_KEYS} for r in records])
        _append(self.results, records)
        self.records += records

    def _complete_records(self) -> list[dict[str, Any]]:
        if not self.results.is_file():
            return []
        records = []
        for line in self.results.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the line a killed run was writing
                break
        counts: dict[str, int] = {}
        for record in records:
            counts[record["task_id"]] = counts.get(record["task_id"], 0) + 1
        complete = [r for r in records if counts[r["task_id"]] == self.n]
        dropped = len(records) - len(complete)
        if dropped:
            log.warning("dropping %d records of problems a previous run did not finish", dropped)
        return complete

    def _rewrite(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for path, records in (
            (self.samples, [{key: r[key] for key in _SAMPLE_KEYS} for r in self.records]),
            (self.results, self.records),
        ):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            tmp.replace(path)


def _append(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """One write per problem, flushed to disk: a killed run leaves whole problems or a cut tail."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def summary_of(records: Sequence[dict[str, Any]], config: EvaluateConfig) -> dict[str, Any]:
    """pass@k and filtered n@k of the records, per difficulty and overall; the programs of a
    problem are ranked in generation order for n@k."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_task.setdefault(record["task_id"], []).append(record)
    problems = [
        ProblemSamples(
            hidden_passed=[bool(r["passed"]) for r in group],
            example_passed=None
            if group[0]["example_passed"] is None
            else [bool(r["example_passed"]) for r in group],
            difficulty=group[0].get("difficulty"),
        )
        for group in by_task.values()
    ]
    if not problems:
        return {"pass@k": {}, "n@k": {}, "problems": {}}
    summary: dict[str, Any] = summarize(problems, config.k, config.n_at)
    origins: dict[str, int] = {}
    for record in records:
        origins[record["origin"]] = origins.get(record["origin"], 0) + 1
    summary["programs"] = {"by_origin": origins, "per_problem": config.n}
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """pass@k and n@k as a terminal table, one row per group (``all`` last)."""
    groups = [g for g in summary.get("pass@k", {}) if g != ALL] + [ALL]
    columns = list(summary["pass@k"].get(ALL, {})) + list(summary["n@k"].get(ALL, {}))
    header = ["group", "problems", *columns]
    rows = [header]
    for group in groups:
        if group not in summary["pass@k"]:
            continue
        values = summary["pass@k"][group] | summary["n@k"][group]
        count = int(summary["problems"][group]["count"])
        rows.append([group, str(count), *(f"{100 * values[c]:.2f}" if c in values else "-" for c in columns)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


def repair_examples(records: Sequence[dict[str, Any]], problems: dict[str, Problem]) -> list[Problem]:
    """Training problems for the repair model: each program that failed its hidden tests, as a
    repair prompt (``models.prompts.repair_problem``) whose solutions are the problem's ground
    truth and the programs that passed, so ``coderl sft`` trains -sum log p(w | D, W_fail, u, c)."""
    passing: dict[str, list[str]] = {}
    for record in records:
        if record["passed"]:
            passing.setdefault(record["task_id"], []).append(record["program"])
    out: list[Problem] = []
    for index, record in enumerate(r for r in records if not r["passed"]):
        problem = problems.get(record["task_id"])
        if problem is None:
            continue
        targets = list(dict.fromkeys(problem.solutions + passing.get(record["task_id"], [])))
        if not targets:
            continue
        asked = repair_problem(
            problem,
            record["program"],
            record["verdict"],
            record["error_type"] or "",
            record["error_message"] or "",
        )
        out.append(
            asked.model_copy(update={"task_id": f"{problem.task_id}/repair{index}", "solutions": targets})
        )
    return out
