"""coderl evaluate: sample N programs per problem, run them against the tests, report pass@k and
the filtered n@k per difficulty, with plain or critical sampling (CodeRL section 3.3).

MODEL is a policy checkpoint (coderl train's run_dir/checkpoints/.../policy, coderl sft's OUT), a
hub name or a preset. Every program is run against the problem's hidden tests and, where it has
them, its example tests (the n@k filter and critical sampling's branch). --critical-sampling
spends the same N per problem: N / (rounds + 1) sampled, the rest refined from the critic's best
prefixes of programs passing the example tests, or repaired from the critic's best failing ones.
Programs run in Docker sandboxes in this process, or through the executor service with --via.
--workers W (or --ray) spreads the problems over W Ray actors, each with its own models and
executor, one problem each at a time (driver/evaluate_ray.py); the records are the same.
--repair-data FILE writes the failed programs as repair problems for `coderl sft` (the repair
model's training set). Exit codes: 0 done, 2 bad usage or input, 3 sandbox or Redis unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from coderl.cli import CommandError, plural
from coderl.cliconfig import add_config_options, load_command_config
from coderl.config import dump_config
from problems import ProblemFormatError, load_problems, save_native_jsonl

from .evaluation import SUMMARY_FILE, EvaluateConfig, ResultLog, format_table, repair_examples, summary_of

log = logging.getLogger(__name__)

HELP = "sample and judge programs for a problem set: pass@k, n@k, critical sampling"
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--model",
        required=True,
        metavar="DIR_OR_NAME",
        help="policy checkpoint directory, hub name or preset",
    )
    add("--problems", required=True, metavar="PATH", help="problems in any format, or 'humaneval'")
    add("--out", required=True, type=Path, metavar="DIR", help="samples.jsonl, results.jsonl, summary.json")
    add("--n", type=int, metavar="N", help="programs per problem (default 10)")
    add(
        "--k",
        type=int,
        nargs="+",
        metavar="K",
        help="pass@k / n@k for these k <= N (default 1 5 10 100 1000)",
    )
    add("--temperature", type=float, metavar="T", help="sampling temperature (default 0.6)")
    add("--top-p", type=float, metavar="P", help="nucleus sampling mass (default 0.95)")
    add("--max-new-tokens", type=int, metavar="N", help="token budget per program (default 512)")
    add("--seed", type=int, metavar="S", help="sampling seed (default 0)")
    add("--critic", metavar="DIR", help="a critic saved by coderl train (for --critical-sampling)")
    add("--critical-sampling", action="store_true", help="refine and repair with the critic (same budget N)")
    add("--repair-model", metavar="DIR", help="the repair model (default: the policy repairs)")
    add("--via", metavar="REDIS_URL", help="run programs on the executor service at this Redis URL")
    add("--backend", choices=("docker", "process"), help="in-process sandbox backend (default docker)")
    add("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N (default auto)")
    add("--workers", type=int, metavar="W", help="evaluate with W Ray actors, one problem each at a time")
    add("--ray", action="store_true", help="use Ray actors even for one worker (default with RAY_ADDRESS)")
    add("--max-problems", type=int, metavar="M", help="only the first M problems")
    add("--repair-data", type=Path, metavar="FILE.jsonl", help="also write repair problems for coderl sft")
    add("--resume", action="store_true", help="keep the problems a previous run in --out finished")
    add_config_options(parser, EvaluateConfig, "EvaluateConfig", "critical.rounds=2")


def _config(args: argparse.Namespace) -> EvaluateConfig:
    flags = {
        "n": args.n,
        "k": args.k,
        "sampling.temperature": args.temperature,
        "sampling.top_p": args.top_p,
        "sampling.max_new_tokens": args.max_new_tokens,
        "sampling.seed": args.seed,
        "critical.enabled": True if args.critical_sampling else None,
        "critical.critic": args.critic,
        "critical.repair_model": args.repair_model,
        "device": args.device,
        "workers.count": args.workers,
        "workers.ray": True if args.ray else None,
    }
    return load_command_config(EvaluateConfig, args, flags)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        problems = load_problems(args.problems)[: args.max_problems]
    except ProblemFormatError as exc:
        raise CommandError(str(exc)) from None
    try:
        results = ResultLog(args.out, config.n, args.resume)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    (args.out / "config.yaml").write_text(dump_config(config) + "\n")
    todo = [(p, _problem_seed(config, i)) for i, p in enumerate(problems) if p.task_id not in results.done]
    if len(todo) < len(problems):
        log.info("resuming: %s done, %s to go", plural(len(problems) - len(todo), "problem"), len(todo))
    stats: Counter[str] = Counter()
    if todo:
        workers = _start_workers(config, args)
        bar = tqdm(
            total=len(problems),
            initial=len(problems) - len(todo),
            desc="evaluate",
            unit="problem",
            file=sys.stderr,
            disable=None,
        )
        try:
            with bar, logging_redirect_tqdm():
                for problem, outcome in workers.imap(todo):
                    results.add(problem, outcome.candidates)
                    stats.update(outcome.stats)
                    bar.update()
        finally:
            workers.close()
    results.reorder([p.task_id for p in problems])  # Ray workers finish in any order
    summary = summary_of(results.records, config) | {"critical_sampling": dict(stats)}
    (args.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if args.repair_data is not None:
        examples = repair_examples(results.records, {p.task_id: p for p in problems})
        save_native_jsonl(examples, args.repair_data)
        log.info("wrote %s for coderl sft to %s", plural(len(examples), "repair problem"), args.repair_data)
    sys.stdout.write(format_table(summary) + "\n")
    return 0


def _problem_seed(config: EvaluateConfig, index: int) -> int | None:
    """A reproducible seed per problem: a resumed run, or a Ray worker, draws what a single
    uninterrupted run would have."""
    seed = config.sampling.seed
    return None if seed is None else seed * 1_000_003 + index * 7_919


def _start_workers(config: EvaluateConfig, args: argparse.Namespace) -> Any:
    """The problems' evaluators, models loaded: in this process, or Ray actors
    (driver/evaluate_ray.py); both have ``imap(todo)`` and ``close()``."""
    from .evaluate_worker import LocalWorkers, WorkerSettings, uses_ray

    settings = WorkerSettings(model=args.model, config=config, via=args.via, backend=args.backend)
    if not uses_ray(config.workers):
        return LocalWorkers(settings)
    from .evaluate_ray import RayWorkers  # imports ray: only when it is used

    return RayWorkers(settings)
