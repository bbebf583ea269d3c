"""The critic's share: how well a learning grid's critics predict held-out outcomes, and whether
their token weights move the policy gradient's credit toward where programs go wrong.

    python -m bench.learning.critic_share --grid runs/bench/learning-tests-only
    python -m bench.learning.critic_share --grid DIR --arms critic --samples 2 --max-problems 40

For each run ``DIR/<arm>-<seed>`` of an arm with a critic and each of its checkpoints
``after-critic`` (the critic pre-trained on the SFT policy's samples) and ``after-rl`` (trained on
online during RL): the checkpoint's policy samples ``--samples`` programs per held-out problem of
the run's suite with the run's own sampler settings (top-p; ``actors.policy.Policy.sample``); the
run's executor settings judge them against the hidden tests in Docker sandboxes
(``executor.engine.Executor``, as ``coderl evaluate`` and the run's executors do; identical
programs of one problem run once). Reported per seed and pooled over seeds:

1. the critic's accuracy (its pooled prediction against the observed class,
   ``critic.evaluation.evaluate_predictions``, what ``critic.training.evaluate_critic`` computes)
   beside always predicting the majority class; the same for passed vs not; per held-out group
   when the suite has groups (``seen_with_solutions``, ``tests_only``);
2. the credit: for each failing program of a problem that also has a passing one, d = the first
   token where it leaves the passing program sharing its longest prefix, and the learner's token
   weights q_hat(w_j) = softmax(v_j)[u] (``critic.training.critic_token_values``) there against the
   program's mean (``credit.py``). Without a critic every weight is 1: a ratio near 1 means the
   critic does not move credit toward the divergence.

The table goes to stdout and everything to ``DIR/critic_share.json``.
"""

from __future__ import annotations

import argparse
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.policy import Policy
from bench.common import host_description, write_json
from bench.learning.credit import PairCredit, divergence_pairs, pair_credit, passed_labels, summarize_credit
from bench.learning.groups import group_names
from coderl.config import load_config
from coderl.execution import ExecutionResult
from coderl.outcomes import Verdict
from coderl.problem import Problem
from coderl.wire import SampledProgram
from critic.config import CriticConfig
from critic.evaluation import evaluate_predictions
from critic.model import Critic, critic_label
from critic.training import CriticExample, critic_batch, critic_token_values, predict_classes
from driver.train_config import TrainConfig
from executor.engine import ExecutionItem, Executor
from problems.suite import load_suite

PHASES = ("after-critic", "after-rl")
ALL = "all"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.learning.critic_share", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--grid", type=Path, required=True, help="the learning grid's --out")
    parser.add_argument("--arms", nargs="+", default=["critic", "rl-only-critic"])
    parser.add_argument("--samples", type=int, default=4, help="programs per held-out problem")
    parser.add_argument("--max-problems", type=int, help="the first N held-out problems only")
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


@dataclass
class Measurement:
    """One checkpoint's (or a pool's) held-out programs, as the critic saw them."""

    num_classes: int
    problems: int = 0
    sandbox_errors: int = 0
    labels: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)
    credits: list[PairCredit] = field(default_factory=list)
    problems_with_pairs: int = 0

    def add(self, other: Measurement) -> None:
        self.problems += other.problems
        self.sandbox_errors += other.sandbox_errors
        self.labels += other.labels
        self.predictions += other.predictions
        self.groups += other.groups
        self.credits += other.credits
        self.problems_with_pairs += other.problems_with_pairs


def run_dirs(grid: Path, arms: list[str]) -> list[tuple[str, int, Path]]:
    """(arm, seed, directory) of every ``<arm>-<seed>`` run in the grid, by arm then seed."""
    found = []
    for arm in arms:
        for path in grid.glob(f"{arm}-*"):
            match = re.fullmatch(rf"{re.escape(arm)}-(\d+)", path.name)
            if match and path.is_dir():
                found.append((arm, int(match.group(1)), path))
    return sorted(found, key=lambda r: (arms.index(r[0]), r[1]))


def held_out(config: TrainConfig, max_problems: int | None) -> list[Problem]:
    """The run's held-out problems, without their example tests (only the hidden ones are run)."""
    problems = load_suite(config.problems.suite).held_out[:max_problems]
    return [p.model_copy(update={"example_tests": []}) for p in problems]


def sample_and_judge(
    policy: Policy, executor: Executor, problems: list[Problem], config: TrainConfig, n: int
) -> list[tuple[SampledProgram, ExecutionResult]]:
    """n programs per problem, sampled with the run's sampler settings in batches of its
    ``batch_size`` rows, each batch judged (hidden tests) while the next is sampled."""
    params = config.sampler.sampling.model_copy(update={"n": n})
    per_batch = max(1, params.batch_size // n)
    base = params.seed

    def judge(samples: list[SampledProgram]) -> list[tuple[SampledProgram, ExecutionResult]]:
        distinct = list(dict.fromkeys((s.task_id, s.program) for s in samples))
        by_id = {p.task_id: p for p in problems}
        results = executor.execute_many([ExecutionItem(by_id[t], program) for t, program in distinct])
        verdict = dict(zip(distinct, results, strict=True))
        return [(s, verdict[(s.task_id, s.program)]) for s in samples]

    pending: list[Future[list[tuple[SampledProgram, ExecutionResult]]]] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for index, start in enumerate(range(0, len(problems), per_batch)):
            seed = None if base is None else base * 1_000_003 + index * 7_919
            chunk = problems[start : start + per_batch]
            samples = policy.sample(chunk, params.model_copy(update={"seed": seed}), f"/share{index}")
            pending.append(pool.submit(judge, samples))
        return [pair for future in pending for pair in future.result()]


def critic_view(
    critic: Critic, problems: list[Problem], judged: list[tuple[SampledProgram, ExecutionResult]]
) -> Measurement:
    """The critic's class predictions of every judged program and its token weights on each
    failing program paired with a passing one (programs with a sandbox error are left out)."""
    classes = critic.config.classes
    out = Measurement(critic.config.num_classes, problems=len(problems))
    by_task: dict[str, list[tuple[SampledProgram, int]]] = {}
    for sample, result in judged:
        if result.verdict == Verdict.SANDBOX_ERROR:
            out.sandbox_errors += 1
            continue
        by_task.setdefault(sample.task_id, []).append((sample, critic_label(result.verdict, classes)))
    passed = critic.config.num_classes - 1
    for problem in problems:
        rows = by_task.get(problem.task_id, [])
        examples = [CriticExample(s.prompt_token_ids, s.token_ids, label) for s, label in rows]
        if not examples:
            continue
        out.labels += [e.label for e in examples]
        out.predictions += predict_classes(critic, examples)
        out.groups += [problem.metadata.get("group")] * len(examples)
        pairs = divergence_pairs([e.program_ids for e in examples], [e.label == passed for e in examples])
        if not pairs:
            continue
        out.problems_with_pairs += 1
        batch, labels = critic_batch(critic, examples)
        values = critic_token_values(critic, batch, labels).cpu()
        for failing, _, d in pairs:
            length = len(examples[failing].program_ids)
            out.credits.append(pair_credit(values[failing, :length].tolist(), d))
    return out


def measure(run_dir: Path, phase: str, args: argparse.Namespace) -> Measurement | None:
    """Sample, judge and score one checkpoint of one run; None when it has no such checkpoint."""
    checkpoint = run_dir / "checkpoints" / phase
    if not (checkpoint / "critic").is_dir():
        return None
    config = load_config(TrainConfig, run_dir / "config.yaml")
    policy = Policy.load(
        config.policy.model_copy(update={"model": str(checkpoint / "policy"), "device": args.device})
    )
    critic = Critic.load(CriticConfig(model=str(checkpoint / "critic"), device=args.device))
    critic.check_tokenizer(policy.tokenizer)
    problems = held_out(config, args.max_problems)
    with Executor(config.execution.worker.executor) as executor:
        judged = sample_and_judge(policy, executor, problems, config, args.samples)
    return critic_view(critic, problems, judged)


def accuracy_summary(labels: list[int], predictions: list[int], num_classes: int) -> dict[str, Any]:
    """The critic's classes and the binary pass/fail view, each beside its majority baseline."""
    classes = evaluate_predictions(labels, predictions, num_classes)
    passed = num_classes - 1
    binary = evaluate_predictions(passed_labels(labels, passed), passed_labels(predictions, passed), 2)
    return {
        "programs": classes.count,
        "pass_rate": sum(passed_labels(labels, passed)) / classes.count,
        "classes": classes.model_dump(),
        "binary": binary.model_dump(),
    }


def summary(m: Measurement) -> dict[str, Any]:
    out: dict[str, Any] = {"problems": m.problems, "sandbox_errors": m.sandbox_errors}
    out |= accuracy_summary(m.labels, m.predictions, m.num_classes) if m.labels else {"programs": 0}
    out["credit"] = summarize_credit(m.credits) | {"problems_with_pairs": m.problems_with_pairs}
    out["by_group"] = {}
    for group in group_names(g for g in m.groups if g is not None):
        rows = [i for i, g in enumerate(m.groups) if g == group]
        out["by_group"][group] = accuracy_summary(
            [m.labels[i] for i in rows], [m.predictions[i] for i in rows], m.num_classes
        )
    return out


def _seed_key(seed: str) -> tuple[bool, int]:
    return (seed == ALL, 0 if seed == ALL else int(seed))


def _f(value: float | None, width: int = 7) -> str:
    return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"


def accuracy_cells(s: dict[str, Any]) -> str:
    """The ``ACCURACY_COLUMNS`` of one summary: programs, pass rate, accuracies and baselines."""
    c, b = s["classes"], s["binary"]
    return (
        f"{s['programs']:>7}{_f(s['pass_rate'])}"
        f"{_f(c['accuracy'])}{_f(c['majority_accuracy'])}{_f(b['accuracy'])}{_f(b['majority_accuracy'])}"
    )


def row_text(arm: str, phase: str, seed: str, s: dict[str, Any]) -> str:
    if not s["programs"]:
        return f"  {arm:<15}{phase:<13}{seed:>5}{0:>7}  (no programs)"
    k = s["credit"]
    return (
        f"  {arm:<15}{phase:<13}{seed:>5}{accuracy_cells(s)}"
        f"{k['pairs']:>7}{_f(k['mean_at_d'])}{_f(k['mean_weight'])}{_f(k['mean_ratio'])}"
        f"{_f(k['above'])}{_f(k['mean_jump'])}"
    )


ACCURACY_COLUMNS = "".join(f"{name:>7}" for name in ("progs", "pass", "acc", "maj", "binacc", "binmaj"))
CREDIT_COLUMNS = "".join(f"{name:>7}" for name in ("pairs", "q@d", "q mean", "ratio", ">mean", "jump"))
HEADER = f"  {'arm':<15}{'phase':<13}{'seed':>5}" + ACCURACY_COLUMNS + CREDIT_COLUMNS


def print_groups(rows: list[dict[str, Any]]) -> None:
    pooled = [r for r in rows if r["seed"] == ALL and r["by_group"]]
    if not pooled:
        return
    print("\nper held-out group, pooled over seeds")
    print(f"  {'arm':<15}{'phase':<13}{'group':<21}" + ACCURACY_COLUMNS)
    for r in pooled:
        for group, s in r["by_group"].items():
            print(f"  {r['arm']:<15}{r['phase']:<13}{group:<21}{accuracy_cells(s)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = run_dirs(args.grid, args.arms)
    if not runs:
        raise SystemExit(f"no <arm>-<seed> runs of {args.arms} in {args.grid}")
    print(f"critic share: {len(runs)} runs in {args.grid}, {args.samples} samples per held-out problem")
    rows: list[dict[str, Any]] = []
    pools: dict[tuple[str, str], Measurement] = {}
    for arm, seed, run_dir in runs:
        for phase in PHASES:
            started = time.monotonic()
            measured = measure(run_dir, phase, args)
            if measured is None:
                print(f"  {run_dir.name} {phase}: no critic checkpoint, skipped")
                continue
            pools.setdefault((arm, phase), Measurement(measured.num_classes)).add(measured)
            rows.append({"arm": arm, "seed": str(seed), "phase": phase, **summary(measured)})
            took = time.monotonic() - started
            print(f"  {run_dir.name} {phase}: {len(measured.labels)} programs in {took:.0f} s", flush=True)
    rows += [{"arm": arm, "seed": ALL, "phase": phase, **summary(m)} for (arm, phase), m in pools.items()]
    rows.sort(key=lambda r: (args.arms.index(r["arm"]), PHASES.index(r["phase"]), _seed_key(r["seed"])))
    print("\ncritic accuracy (pooled prediction vs observed class; binary: passed vs not) and credit at d")
    print(HEADER)
    for r in rows:
        print(row_text(r["arm"], r["phase"], r["seed"], r))
    print_groups(rows)
    out = args.grid / "critic_share.json"
    write_json(
        out,
        {
            "host": host_description(),
            "samples": args.samples,
            "max_problems": args.max_problems,
            "rows": rows,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
