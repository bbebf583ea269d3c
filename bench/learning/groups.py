"""The learning grid's paired tests per held-out group (the suite's tests-only variant).

With ``problems.suite.tests_only_primitives`` set (``problems/suite/variant.py``), each held-out
problem of the suite records its group in ``metadata["group"]``: ``seen_with_solutions`` or
``tests_only``. The run's ``evaluations.jsonl`` keys verdicts by task id only, so the groups are
read back by rebuilding the suite from the run's own resolved configuration (``config.yaml``); a
run on problem files, or on a suite without the variant, has no groups. Each comparison of the grid
is then repeated on each group's problems alone, pooled over the seeds as the overall test is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from coderl.config import load_config
from coderl.paired import PairedCounts, paired_counts, passed_by_task
from driver.train_config import TrainConfig
from problems.suite import load_suite
from problems.suite.variant import GROUPS

__all__ = ["compare_by_group", "group_names", "report_groups", "suite_groups"]

Results = dict[str, dict[int, dict[str, Any]]]
"""arm -> seed -> the arm's final evaluation record (``verdicts``: task id -> verdict name)"""


def suite_groups(run_dir: Path) -> dict[str, str]:
    """Task id -> group of the held-out problems of the suite the run at ``run_dir`` trained on;
    empty when it trained on problem files or its held-out problems have no group."""
    config = load_config(TrainConfig, run_dir / "config.yaml")
    if config.problems.source != "suite":
        return {}
    held_out = load_suite(config.problems.suite).held_out
    return {p.task_id: p.metadata["group"] for p in held_out if "group" in p.metadata}


def group_names(groups: Iterable[str]) -> list[str]:
    """The distinct groups among ``groups``, the variant's in ``GROUPS`` order first."""
    present = set(groups)
    return [name for name in GROUPS if name in present] + sorted(present - set(GROUPS))


def _restricted(verdicts: Mapping[str, str], tasks: set[str]) -> dict[str, bool]:
    return {task: ok for task, ok in passed_by_task(verdicts).items() if task in tasks}


def compare_by_group(results: Results, a: str, b: str, groups: Mapping[str, str]) -> dict[str, PairedCounts]:
    """Group -> B against A on that group's problems, pooled over the seeds of A."""
    seeds = sorted(results[a])
    compared = {}
    for name in group_names(groups.values()):
        tasks = {task for task, group in groups.items() if group == name}
        compared[name] = paired_counts(
            (_restricted(results[a][s]["verdicts"], tasks), _restricted(results[b][s]["verdicts"], tasks))
            for s in seeds
        )
    return compared


def _row_text(comparison: str, group: str, c: PairedCounts) -> str:
    shares = f"{c.a_passed / c.pairs:>7.3f} -> {c.b_passed / c.pairs:.3f}" if c.pairs else f"{'-':>16}"
    counts = f"{c.wins:>7}{c.losses:>8}{c.p_value:>9.3g}"
    return f"  {comparison:<22}{group:<21}{c.pairs:>6}{shares}{counts}"


def report_groups(
    results: Results, pairs: list[tuple[str, str]], groups: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Print each comparison per group (pass@1 of A -> B, wins, losses, sign-test p) and return the
    rows for ``learning.json``."""
    print("\npaired per held-out group (exact two-sided sign test, pooled over the seeds)")
    print(f"  {'comparison':<22}{'group':<21}{'pairs':>6}{'pass@1':>16}{'wins':>7}{'losses':>8}{'p':>9}")
    rows = []
    for a, b in pairs:
        for name, c in compare_by_group(results, a, b, groups).items():
            print(_row_text(f"{b} vs {a}", name, c))
            rows.append({"a": a, "b": b, "group": name, **vars(c), "p_value": c.p_value})
    return rows
