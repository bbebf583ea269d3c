"""Does RL beat SFT alone? The learning grid on the built-in suite, with paired significance tests.

    python -m bench.learning                       # 3 seeds x (SFT, 3 arms), ~80 min on 2 CPUs
    python -m bench.learning --arms rl-only rl-only-critic ce --set learner.batch_size=128 \
        sampler.problems_per_round=32 phases.rl_steps=60 learner.loss.baseline=group_mean

Per seed: one SFT run (``phases.sft_steps`` of the config, no critic or RL phase), then each arm
from that SFT checkpoint through the critic and RL phases of the config, each arm changed only by
its overrides (``ARMS``):

- ``critic``: CodeRL as configured (critic-weighted policy gradient, plus cross-entropy on ground
  truth at ``learner.loss.ce_weight``);
- ``nocritic``: the same without a critic (``critic.mode=off``, no critic pre-training);
- ``ce``: the control, cross-entropy only for the same number of updates
  (``learner.loss.rl_weight=0 learner.loss.ce_weight=1``): what continued supervised training gives;
- ``rl-only``: the reward alone, no ground truth in the RL phase and no critic
  (``learner.loss.ce_weight=0 critic.mode=off``, no critic pre-training);
- ``rl-only-critic``: the same with critic weighting.

Every run is ``python -m driver`` (``coderl train``) in its own directory under ``--out``, seeded
with the seed in every seed field. The held-out verdicts of each evaluation are in the run's
``evaluations.jsonl``; pass@1 is greedy. The report gives pass@1 per seed and arm, then each arm
against SFT alone (and the RL arms against the ``ce`` control) as a paired test pooled over seeds:
wins (the arm passes a held-out problem the other fails), losses, and the exact two-sided sign
test's p (``coderl/paired.py``). On the suite's tests-only variant
(``--set problems.suite.tests_only_primitives=12``) every comparison is repeated per held-out group
(``seen_with_solutions``, ``tests_only``; ``groups.py``). ``--reuse`` keeps finished runs, so an
interrupted grid continues.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import host_description, write_json
from bench.learning.groups import report_groups, suite_groups
from coderl.paired import PairedCounts, paired_counts, passed_by_task
from driver.train import read_evaluations
from learner.checkpoint import latest_checkpoint

REPO = Path(__file__).resolve().parents[2]
"""the repository root: every run is ``python -m driver`` there"""
ARMS: dict[str, list[str]] = {
    "critic": [],
    "nocritic": ["critic.mode=off", "phases.critic_steps=0"],
    "ce": [
        "learner.loss.rl_weight=0",
        "learner.loss.ce_weight=1",
        "critic.mode=off",
        "phases.critic_steps=0",
    ],
    "rl-only": ["learner.loss.ce_weight=0", "critic.mode=off", "phases.critic_steps=0"],
    "rl-only-critic": ["learner.loss.ce_weight=0"],
}
SFT = "sft"
SFT_PHASES = ("sft", "rl")
"""the SFT run's last evaluation follows one of these phases (its RL phase is empty)"""
RL_ARMS = ("critic", "nocritic", "rl-only", "rl-only-critic")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.learning", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["critic", "nocritic", "ce"], choices=sorted(ARMS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/learning"))
    parser.add_argument("--config", type=Path, help="TrainConfig file every run starts from")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE",
        help="overrides for every run, e.g. phases.rl_steps=60",
    )  # fmt: skip
    parser.add_argument("--reuse", action="store_true", help="keep runs that already finished")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    return parser.parse_args(argv)


def seed_overrides(seed: int) -> list[str]:
    return [
        f"{key}={seed}" for key in ("seed", "policy.seed", "critic.seed", "sft.seed", "sampler.sampling.seed")
    ]


def final_evaluation(run_dir: Path, last_phases: tuple[str, ...] = ("rl",)) -> dict[str, Any] | None:
    """The run's last evaluation after one of ``last_phases`` (an arm: ``rl``; the SFT run, whose
    later phases are empty and may not be evaluated: ``sft`` and ``rl``), or None if it has none."""
    if not (run_dir / "run.json").is_file():
        return None
    ends = {f"after {phase}" for phase in last_phases}
    finished = [r for r in read_evaluations(run_dir) if r["when"] in ends]
    return finished[-1] if finished else None


def run(
    name: str, overrides: list[str], args: argparse.Namespace, last_phases: tuple[str, ...] = ("rl",)
) -> dict[str, Any]:
    run_dir = (args.out / name).resolve()
    if args.reuse and (done := final_evaluation(run_dir, last_phases)) is not None:
        print(f"  {name}: reused ({done['pass@1']:.3f})", flush=True)
        return done
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "driver", "--run-dir", str(run_dir)]
    if args.config:
        command += ["--config", str(args.config.resolve())]
    command += ["--set", *args.set, *overrides]
    started = time.monotonic()
    log = args.out / f"{name}.log"
    with log.open("w") as out:
        completed = subprocess.run(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=args.timeout
        )
    done = final_evaluation(run_dir, last_phases)
    if completed.returncode != 0 or done is None:
        raise SystemExit(f"{name}: the run failed (exit {completed.returncode}); see {log}")
    print(f"  {name}: held-out pass@1 {done['pass@1']:.3f} in {time.monotonic() - started:.0f} s", flush=True)
    return done


def run_grid(args: argparse.Namespace) -> dict[str, dict[int, dict[str, Any]]]:
    results: dict[str, dict[int, dict[str, Any]]] = {SFT: {}, **{arm: {} for arm in args.arms}}
    for seed in args.seeds:
        seeded = seed_overrides(seed)
        sft_only = [*seeded, "phases.critic_steps=0", "phases.rl_steps=0"]
        results[SFT][seed] = run(f"{SFT}-{seed}", sft_only, args, SFT_PHASES)
        checkpoint = latest_checkpoint(args.out / f"{SFT}-{seed}")
        assert checkpoint is not None
        start = [f"policy.model={(checkpoint / 'policy').resolve()}", "phases.sft_steps=0"]
        for arm in args.arms:
            results[arm][seed] = run(f"{arm}-{seed}", [*seeded, *start, *ARMS[arm]], args)
    return results


def compare(results: dict[str, dict[int, dict[str, Any]]], a: str, b: str) -> PairedCounts:
    seeds = sorted(results[a])
    return paired_counts(
        (passed_by_task(results[a][s]["verdicts"]), passed_by_task(results[b][s]["verdicts"])) for s in seeds
    )


def report(results: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds
    print(f"\nheld-out pass@1 (greedy), {len(next(iter(results[SFT].values()))['verdicts'])} problems")
    print(f"  {'arm':<10}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}")
    for arm, by_seed in results.items():
        values = [by_seed[s]["pass@1"] for s in seeds]
        print(f"  {arm:<10}" + "".join(f"{v:>9.3f}" for v in values) + f"{sum(values) / len(values):>9.3f}")
    pairs = [(SFT, arm) for arm in args.arms]
    if "ce" in args.arms:
        pairs += [("ce", arm) for arm in args.arms if arm in RL_ARMS]
    print(f"\npaired over {len(seeds)} seeds (exact two-sided sign test on the discordant problems)")
    print(f"  {'comparison':<22}{'pass@1':>16}{'wins':>7}{'losses':>8}{'p':>9}")
    tests = []
    for a, b in pairs:
        c = compare(results, a, b)
        print(
            f"  {b + ' vs ' + a:<22}{c.a_passed / c.pairs:>7.3f} -> {c.b_passed / c.pairs:.3f}"
            f"{c.wins:>7}{c.losses:>8}{c.p_value:>9.3g}"
        )
        tests.append({"a": a, "b": b, **vars(c), "p_value": c.p_value})
    pass_at_1 = {arm: {str(s): by_seed[s]["pass@1"] for s in seeds} for arm, by_seed in results.items()}
    groups = suite_groups(args.out / f"{SFT}-{seeds[0]}")
    return {
        "host": host_description(),
        "seeds": seeds,
        "overrides": args.set,
        "pass@1": pass_at_1,
        "tests": tests,
        "by_group": report_groups(results, pairs, groups) if groups else [],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"learning grid: seeds {args.seeds}, arms {args.arms}, runs in {args.out}; overrides {args.set}")
    summary = report(run_grid(args), args)
    write_json(args.out / "learning.json", summary)
    print(f"wrote {args.out / 'learning.json'}")
    return 0
