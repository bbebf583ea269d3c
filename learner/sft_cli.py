"""coderl sft: warm-start a policy with cross-entropy on the ground-truth programs of a problem set.

MODEL is a preset (tiny, tiny-causal, t5-small-random: random weights, no download), a checkpoint
directory or a Hugging Face hub name. OUT becomes a checkpoint directory that transformers'
``from_pretrained`` loads (tokenizer included), with ``coderl_policy.json`` (policy version),
``sft_config.yaml`` (the resolved configuration) and ``sft_log.jsonl`` (the loss of every step).
Config precedence: --config FILE (SFTCommandConfig, learner/config.py), then --set, then the flags.
A tiny preset (tiny, tiny-causal, tiny-byte) trains with the defaults that suit it, learning rate
2e-3 and 16 programs per step (what `coderl train` uses), unless the file, --set or a flag says
otherwise; other models keep CodeRL's CodeT5-large defaults (2e-5, 8).
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

from coderl.cli import CommandError, plural
from coderl.cliconfig import add_config_options, load_command_config
from coderl.config import dump_config
from models.names import UnknownModelError, check_model_name
from problems import ProblemFormatError, load_problems

from .config import SFTCommandConfig

log = logging.getLogger(__name__)

HELP = "warm-start a policy with cross-entropy on ground-truth programs (writes a checkpoint)"
DESCRIPTION = __doc__
_TINY = {"optimizer.lr": 2e-3, "batch_size": 16}
PRESET_DEFAULTS: dict[str, dict[str, object]] = {"tiny": _TINY, "tiny-causal": _TINY, "tiny-byte": _TINY}
"""SFT defaults per model preset (models/loading.py), below the file, --set and the flags: a tiny
random model learns nothing in 100 steps at CodeT5-large's 2e-5 (tiny.toml trains the same way)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--problems", required=True, metavar="PATH", help="problems with solutions, any format")
    add("--model", metavar="NAME_OR_DIR", help="preset, checkpoint directory or hub name (default: tiny)")
    add("--out", required=True, type=Path, metavar="DIR", help="checkpoint directory to write")
    add("--steps", type=int, metavar="N", help="optimizer steps (sets steps)")
    default = SFTCommandConfig()
    add(
        "--batch-size",
        type=int,
        metavar="B",
        help=f"programs per step (sets batch_size; default {_TINY['batch_size']} for the tiny presets, "
        f"else {default.batch_size})",
    )
    add(
        "--lr",
        type=float,
        metavar="LR",
        help=f"learning rate (sets optimizer.lr; default {_TINY['optimizer.lr']:g} for the tiny presets, "
        f"else {default.optimizer.lr:g})",
    )
    add("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N (sets policy.device)")
    add_config_options(
        parser, SFTCommandConfig, "SFTCommandConfig", "optimizer.weight_decay=0", notes=_preset_notes()
    )


def _preset_notes() -> dict[str, str]:
    """``--help`` notes on the keys whose default depends on the model preset."""
    by_value: dict[str, dict[object, list[str]]] = {}
    for preset, defaults in PRESET_DEFAULTS.items():
        for key, value in defaults.items():
            by_value.setdefault(key, {}).setdefault(value, []).append(preset)
    return {
        key: "; ".join(
            f"default with --model {_either(presets)}: {value}" for value, presets in values.items()
        )
        for key, values in by_value.items()
    }


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def resolve_config(args: argparse.Namespace) -> SFTCommandConfig:
    """The configuration, with the model preset's defaults under what the user set."""
    flags = {
        "policy.model": args.model,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "optimizer.lr": args.lr,
        "policy.device": args.device,
    }
    config = load_command_config(SFTCommandConfig, args, flags)
    defaults = PRESET_DEFAULTS.get(config.policy.model)
    return load_command_config(SFTCommandConfig, args, flags, defaults) if defaults else config


def _check_out(out: Path) -> None:
    if out.is_file():
        raise CommandError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        raise CommandError(f"--out {out} is not empty; give a new or empty directory")


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    _check_out(args.out)
    try:
        problems = load_problems(args.problems)
    except ProblemFormatError as exc:
        raise CommandError(str(exc)) from None
    if not any(problem.solutions for problem in problems):
        raise CommandError(f"--problems {args.problems}: no problem has a ground-truth solution to train on")

    try:  # before torch loads: an unknown name fails at once
        check_model_name(config.policy.model)
    except UnknownModelError as exc:
        raise CommandError(f"--model {config.policy.model}: {exc}") from None
    from actors.policy import Policy  # torch and transformers load only after the arguments are valid

    from .sft import train_sft

    try:
        policy = Policy.load(config.policy)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--model {config.policy.model}: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_config.yaml").write_text(dump_config(config) + "\n")
    log.info(
        "sft: %s of %s (lr %g, %s per step) on %s; resolved configuration in %s",
        plural(config.steps, "step"),
        config.policy.model,
        config.optimizer.lr,
        plural(config.batch_size, "program"),
        plural(len(problems), "problem"),
        args.out / "sft_config.yaml",
    )
    bar = tqdm(total=config.steps, desc="sft", unit="step", file=sys.stderr, disable=None)
    with bar, logging_redirect_tqdm(), (args.out / "sft_log.jsonl").open("w") as steps_log:

        def on_step(step: int, loss: float) -> None:
            steps_log.write(json.dumps({"step": step, "loss": loss}) + "\n")
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update()

        report = train_sft(policy, problems, config, config.steps, on_step=on_step)
    policy.save(args.out, extra={"sft_steps": config.steps})
    window = max(1, min(config.log_every, len(report.losses) // 4))
    first = sum(report.losses[:window]) / window
    last = sum(report.losses[-window:]) / window
    sys.stdout.write(
        f"sft: {plural(config.steps, 'step')} over {plural(report.programs, 'ground-truth program')} "
        f"({report.examples} seen) in {report.seconds:.1f} s; "
        f"loss {first:.4f} -> {last:.4f} (mean of the first and last {plural(window, 'step')})\n"
        f"checkpoint: {args.out} (policy version {policy.version})\n"
    )
    return 0
