"""Does critical sampling beat plain sampling at the same budget? On the built-in suite, after
``coderl train``'s default run, 3 seeds, with paired sign tests.

    python -m bench.critical                    # 3 seeds: train, then evaluate both ways
    python -m bench.critical --reuse            # keep finished trainings and evaluations

Per seed: ``python -m driver`` with the embedded defaults (seeded in every seed field; the
training is the default run's), then ``coderl evaluate`` on the held-out split twice with the same
N programs per problem: plain sampling, and critical sampling with the run's own critic (the
policy repairs: no repair model is trained at this scale). Reported: pass@k (k = 1, 5, 10) and the
filtered 1@10 / 5@10, mean over seeds, then per metric the problems where critical sampling's value
is higher or lower than plain sampling's, pooled over seeds, with the exact two-sided sign test
(``coderl/paired.py``), and what critical sampling did (refine / repair rounds, programs by
origin).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import host_description, write_json
from bench.learning.grid import final_evaluation, seed_overrides
from coderl.paired import sign_test_p
from coderl.passk import filtered_n_at_k, pass_at_k

REPO = Path(__file__).resolve().parents[2]
MODES = {"plain": [], "critical": ["--critical-sampling"]}
KS = (1, 5, 10)
NS = (1, 5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.critical", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=10, help="programs per problem in both modes")
    parser.add_argument("--max-problems", type=int, help="evaluate on the first M held-out problems")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/critical"))
    parser.add_argument("--train-set", nargs="*", default=[], metavar="KEY=VALUE", help="training overrides")
    parser.add_argument("--reuse", action="store_true", help="keep finished trainings and evaluations")
    parser.add_argument("--timeout", type=float, default=5400, help="seconds per command")
    return parser.parse_args(argv)


def _call(command: list[str], log: Path, timeout: float) -> None:
    with log.open("w") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed (exit {done.returncode}); see {log}")


def train(seed: int, args: argparse.Namespace) -> Path:
    run_dir = (args.out / f"train-{seed}").resolve()
    if args.reuse and final_evaluation(run_dir) is not None:
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "driver", "--run-dir", str(run_dir), "--set", *seed_overrides(seed)]
    _call([*command, *args.train_set], args.out / f"train-{seed}.log", args.timeout)
    print(f"  train-{seed}: {time.monotonic() - started:.0f} s", flush=True)
    return run_dir


def evaluate(seed: int, mode: str, run_dir: Path, held_out: Path, args: argparse.Namespace) -> Path:
    out = (args.out / f"{mode}-{seed}").resolve()
    if args.reuse and (out / "summary.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    checkpoint = run_dir / "checkpoints" / "after-rl"
    command = [sys.executable, "-m", "coderl.cli", "evaluate", "--model", str(checkpoint / "policy")]
    command += ["--problems", str(held_out), "--out", str(out), "--n", str(args.n), "--seed", str(seed)]
    command += ["--k", *map(str, KS), "--max-new-tokens", "160", "--critic", str(checkpoint / "critic")]
    if args.max_problems:
        command += ["--max-problems", str(args.max_problems)]
    started = time.monotonic()
    _call([*command, *MODES[mode]], args.out / f"{mode}-{seed}.log", args.timeout)
    print(f"  {mode}-{seed}: {time.monotonic() - started:.0f} s", flush=True)
    return out


def per_problem(out: Path) -> dict[str, dict[str, float]]:
    """task id -> {metric: value} from an evaluation's results.jsonl."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_task.setdefault(record["task_id"], []).append(record)
    values: dict[str, dict[str, float]] = {}
    for task, records in by_task.items():
        hidden = [bool(r["passed"]) for r in records]
        survived = [r["example_passed"] is not False for r in records]
        n = len(hidden)
        metrics = {f"pass@{k}": pass_at_k(n, sum(hidden), k) for k in KS if k <= n}
        metrics |= {f"{m}@{n}": filtered_n_at_k(survived, hidden, m, n) for m in NS}
        values[task] = metrics
    return values


def _mean(table: dict[str, dict[str, float]], metric: str) -> float:
    return sum(values[metric] for values in table.values()) / len(table)


def report(outs: dict[str, dict[int, Path]], args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds
    tables = {mode: {s: per_problem(outs[mode][s]) for s in seeds} for mode in MODES}
    metrics = list(next(iter(tables["plain"][seeds[0]].values())))
    print(f"\nheld-out, N = {args.n} programs per problem in both modes, {len(seeds)} seeds")
    print(f"  {'metric':<9}{'plain':>9}{'critical':>10}{'higher':>8}{'lower':>7}{'p':>9}")
    rows = []
    for metric in metrics:
        means, wins, losses = {}, 0, 0
        for mode in MODES:
            per_seed = [_mean(tables[mode][s], metric) for s in seeds]
            means[mode] = sum(per_seed) / len(per_seed)
        for s in seeds:
            for task, plain in tables["plain"][s].items():
                critical = tables["critical"][s][task][metric]
                wins += critical > plain[metric] + 1e-12
                losses += critical < plain[metric] - 1e-12
        p = sign_test_p(wins, losses)
        print(f"  {metric:<9}{means['plain']:>9.3f}{means['critical']:>10.3f}{wins:>8}{losses:>7}{p:>9.3g}")
        rows.append({"metric": metric, **means, "higher": wins, "lower": losses, "p_value": p})
    stats = {s: json.loads((outs["critical"][s] / "summary.json").read_text()) for s in seeds}
    activity = {
        str(s): {
            "rounds": stats[s].get("critical_sampling", {}),
            "programs": stats[s]["programs"]["by_origin"],
        }
        for s in seeds
    }
    print(f"  critical sampling per seed: {json.dumps(activity)}")
    return {"host": host_description(), "seeds": seeds, "n": args.n, "rows": rows, "activity": activity}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    suite = args.out / "suite"
    if not (suite / "held_out.jsonl").is_file():
        _call([sys.executable, "-m", "coderl.cli", "suite", "--out", str(suite), "--split", "held_out"],
              args.out / "suite.log", args.timeout)  # fmt: skip
    print(f"critical sampling against plain sampling: seeds {args.seeds}, N {args.n}, in {args.out}")
    outs: dict[str, dict[int, Path]] = {mode: {} for mode in MODES}
    for seed in args.seeds:
        run_dir = train(seed, args)
        for mode in MODES:
            outs[mode][seed] = evaluate(seed, mode, run_dir, suite / "held_out.jsonl", args)
    summary = report(outs, args)
    write_json(args.out / "critical.json", summary)
    print(f"wrote {args.out / 'critical.json'}")
    return 0
