"""coderl train: the CodeRL training run (sft warm start -> critic pre-training -> RL).

With no arguments it runs the embedded defaults on one machine: a tiny model on the built-in task
suite, a local Ray instance, a Redis server started in the run directory, executor workers with
Docker sandboxes. It ends with held-out pass@1 before and after training. The same command runs on
a cluster under `ray job submit ... -- python -m driver --config FILE` (see README).
Config precedence: --config FILE (TrainConfig, driver/train_config.py), then --set, then the flags;
the resolved configuration goes to RUN_DIR/config.yaml. --resume continues the run in --run-dir
from its latest checkpoint.
Exit codes: 0 trained, 2 bad usage or configuration, 3 a service could not start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from coderl.cli import CommandError, plural
from coderl.cliconfig import add_config_options, load_command_config
from coderl.paired import paired_counts, passed_by_task

from .train_config import TrainConfig

log = logging.getLogger(__name__)

HELP = "train a policy with CodeRL: sft -> critic -> RL, on Ray, Redis and Docker sandboxes"
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--run-dir", type=Path, metavar="DIR", help="where checkpoints and metrics go (sets run_dir)")
    add("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    add("--no-ray", action="store_true", help="run every role in this process, synchronously (sets use_ray)")
    add_config_options(
        parser,
        TrainConfig,
        "TrainConfig",
        "phases.rl_steps=50",
        file_hint=" (e.g. deploy/configs/tiny.toml)",
    )


def _config(args: argparse.Namespace) -> TrainConfig:
    flags: dict[str, object] = {"run_dir": args.run_dir}
    if args.no_ray:
        flags |= {"use_ray": "false", "mode": "sync"}
    return load_command_config(TrainConfig, args, flags)


def describe(config: TrainConfig) -> str:
    """The one log line that stands for the resolved configuration (config.yaml holds all of it)."""
    phases = config.phases
    steps = f"sft {phases.sft_steps}, critic {phases.critic_steps}, rl {phases.rl_steps} steps"
    where = "Ray" if config.use_ray else "this process"
    return (
        f"training {config.policy.model} ({steps}; {config.mode} on {where}); "
        f"resolved configuration in {config.run_dir / 'config.yaml'}"
    )


def format_evaluations(evaluations: list[dict[str, object]]) -> str:
    if not evaluations:
        return "no held-out problems: nothing evaluated"
    lines = [f"held-out pass@1 (greedy decoding, {plural(int(evaluations[-1]['problems']), 'problem')})"]
    for row in evaluations:
        lines.append(
            f"  {row['when']:<22} {float(row['pass@1']):6.3f}   policy version {row['policy_version']}"
        )
    return "\n".join(lines)


def format_rl_gain(records: list[dict[str, Any]]) -> str | None:
    """The RL phase against its starting point ("after sft"), problem by problem, from the run's
    evaluation records; None when there is no RL phase to compare."""
    start = next((r for r in reversed(records) if r["when"] == "after sft"), None)
    end = next((r for r in reversed(records) if r["when"] == "after rl"), None)
    if start is None or end is None or start["policy_version"] == end["policy_version"]:
        return None
    counts = paired_counts([(passed_by_task(start["verdicts"]), passed_by_task(end["verdicts"]))])
    return (
        f"  RL vs after sft: {plural(counts.wins, 'held-out problem')} gained, {counts.losses} lost "
        f"(exact sign test p = {counts.p_value:.3g})"
    )


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    log.info("%s", describe(config))

    # torch, transformers and ray load after the arguments are valid
    from .train import RunError, read_evaluations, train

    try:
        result = train(config, resume=args.resume)
    except RunError as exc:  # 2: the configuration or run directory; 3: Redis or Docker
        raise CommandError(str(exc), exit_code=exc.exit_code) from None
    sys.stdout.write(format_evaluations(result.state.evaluations) + "\n")
    if (gain := format_rl_gain(read_evaluations(result.run_dir))) is not None:
        sys.stdout.write(gain + "\n")
    sys.stdout.write(
        f"run directory: {result.run_dir} (metrics.jsonl, tensorboard/, curves/, checkpoints/)\n"
    )
    return 0
