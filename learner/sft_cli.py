"""coderl sft: warm-start a policy with cross-entropy on the ground-truth programs of a problem set.

MODEL is a preset (tiny, tiny-causal, t5-small-random: random weights, no download), a checkpoint
directory or a Hugging Face hub name. OUT becomes a checkpoint directory that transformers'
``from_pretrained`` loads (tokenizer included), with ``coderl_policy.json`` (policy version),
``sft_config.yaml`` (the resolved configuration) and ``sft_log.jsonl`` (the loss of every step).
Config precedence: --config FILE (SFTCommandConfig, learner/config.py), then --set, then the flags.
Exit codes: 0 trained, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from coderl.cli import CommandError
from coderl.config import dump_config, load_config
from problems import ProblemFormatError, load_problems

from .config import SFTCommandConfig

log = logging.getLogger(__name__)

HELP = "warm-start a policy with cross-entropy on ground-truth programs (writes a checkpoint)"
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--problems", required=True, metavar="PATH", help="problems with solutions, any format")
    add("--model", metavar="NAME_OR_DIR", help="preset, checkpoint directory or hub name (default: tiny)")
    add("--out", required=True, type=Path, metavar="DIR", help="checkpoint directory to write")
    add("--steps", type=int, metavar="N", help="optimizer steps (sets steps)")
    add("--batch-size", type=int, metavar="B", help="programs per step (sets batch_size)")
    add("--lr", type=float, metavar="LR", help="learning rate (sets optimizer.lr)")
    add("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N (sets policy.device)")
    add("--config", type=Path, metavar="FILE", help="SFTCommandConfig as TOML/YAML")
    add(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. optimizer.weight_decay=0 (after --config, before the flags)",
    )


def _config(args: argparse.Namespace) -> SFTCommandConfig:
    overrides = list(args.overrides)
    flags = {
        "policy.model": args.model,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "optimizer.lr": args.lr,
        "policy.device": args.device,
    }
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    return load_config(SFTCommandConfig, args.config, overrides)


def _check_out(out: Path) -> None:
    if out.is_file():
        raise CommandError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        raise CommandError(f"--out {out} is not empty; give a new or empty directory")


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    _check_out(args.out)
    try:
        problems = load_problems(args.problems)
    except ProblemFormatError as exc:
        raise CommandError(str(exc)) from None
    if not any(problem.solutions for problem in problems):
        raise CommandError(f"--problems {args.problems}: no problem has a ground-truth solution to train on")
    log.debug("resolved SFT configuration:\n%s", dump_config(config))

    from actors.policy import Policy  # torch and transformers load only after the arguments are valid

    from .sft import train_sft

    try:
        policy = Policy.load(config.policy)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--model {config.policy.model}: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_config.yaml").write_text(dump_config(config) + "\n")
    bar = tqdm(total=config.steps, desc="sft", unit="step", file=sys.stderr, disable=None)
    with bar, logging_redirect_tqdm(), (args.out / "sft_log.jsonl").open("w") as steps_log:

        def on_step(step: int, loss: float) -> None:
            steps_log.write(json.dumps({"step": step, "loss": loss}) + "\n")
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update()

        report = train_sft(policy, problems, config, on_step=on_step)
    policy.save(args.out, extra={"sft_steps": config.steps})
    window = max(1, min(config.log_every, len(report.losses) // 4))
    first = sum(report.losses[:window]) / window
    last = sum(report.losses[-window:]) / window
    sys.stdout.write(
        f"sft: {config.steps} steps over {report.programs} ground-truth programs "
        f"({report.examples} seen) in {report.seconds:.1f} s; "
        f"loss {first:.4f} -> {last:.4f} (mean of the first and last {window} steps)\n"
        f"checkpoint: {args.out} (policy version {policy.version})\n"
    )
    return 0
