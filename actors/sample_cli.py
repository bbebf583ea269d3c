"""coderl sample: sample programs for a problem set from a policy, as SAMPLES.jsonl for coderl execute.

MODEL is a checkpoint directory (e.g. written by coderl sft), a hub name, or a preset (random
weights: the untrained baseline). Each OUT line is {"task_id", "program", "sample_id",
"policy_version", "finished"}; ``coderl execute`` reads ``task_id`` and ``program``. Samples come in
problem order, N per problem. --temperature 0 decodes greedily (then N is usually 1).
Config precedence: --config FILE (SamplingConfig, actors/config.py), then --set, then the flags.
Exit codes: 0 written, 2 bad usage or input.
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
from problems import ProblemFormatError, load_problems

from .config import PolicyConfig, SamplingConfig

log = logging.getLogger(__name__)

HELP = "sample programs for a problem set from a policy checkpoint"
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", required=True, metavar="DIR_OR_NAME", help="checkpoint directory, hub name or preset")
    add("--problems", required=True, metavar="PATH", help="problems in any format, or 'humaneval'")
    add("--n", type=int, metavar="K", help="programs per problem (sets n)")
    add("--out", required=True, type=Path, metavar="SAMPLES.jsonl", help="one line per program")
    add("--temperature", type=float, metavar="T", help="sampling temperature, 0 = greedy (default 0.6)")
    add("--top-p", type=float, metavar="P", help="nucleus sampling mass (default 0.95)")
    add("--max-new-tokens", type=int, metavar="N", help="token budget per program (default 512)")
    add("--batch-size", type=int, metavar="B", help="sequences decoded together (default 32)")
    add("--seed", type=int, metavar="S", help="sampling seed (default 0)")
    add("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda, cuda:N (default auto)")
    add_config_options(parser, SamplingConfig, "SamplingConfig", "top_p=0.9")


def _config(args: argparse.Namespace) -> SamplingConfig:
    flags = {
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    return load_command_config(SamplingConfig, args, flags)


def run(args: argparse.Namespace) -> int:
    params = _config(args)
    if args.out.is_dir():
        raise CommandError(f"--out {args.out} is a directory; give a file name")
    if not args.out.parent.is_dir():
        raise CommandError(f"--out {args.out}: directory {args.out.parent} does not exist")
    try:
        problems = load_problems(args.problems)
    except ProblemFormatError as exc:
        raise CommandError(str(exc)) from None
    log.debug("resolved sampling configuration:\n%s", dump_config(params))

    from .policy import Policy  # torch and transformers load only after the arguments are valid

    try:
        policy = Policy.load(PolicyConfig(model=args.model, device=args.device))
    except (OSError, ValueError) as exc:
        raise CommandError(f"--model {args.model}: {exc}") from None
    # Whole problems per chunk keep the progress bar honest without changing the batching.
    per_chunk = max(1, params.batch_size // params.n)
    written = 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    bar = tqdm(total=len(problems), desc="sample", unit="problem", file=sys.stderr, disable=None)
    with bar, logging_redirect_tqdm(), tmp.open("w", encoding="utf-8") as out:
        for start in range(0, len(problems), per_chunk):
            chunk = problems[start : start + per_chunk]
            for sample in policy.sample(
                chunk, params.model_copy(update={"seed": _chunk_seed(params, start)})
            ):
                record = {
                    "task_id": sample.task_id,
                    "program": sample.program,
                    "sample_id": sample.sample_id,
                    "policy_version": sample.policy_version,
                    "finished": sample.finished,
                }
                out.write(json.dumps(record) + "\n")
                written += 1
            bar.update(len(chunk))
    tmp.replace(args.out)
    programs, of = plural(written, "program"), plural(len(problems), "problem")
    sys.stdout.write(f"sample: {programs} for {of} -> {args.out}\n")
    return 0


def _chunk_seed(params: SamplingConfig, start: int) -> int | None:
    """A distinct, reproducible seed per chunk, so chunks never repeat each other's draws."""
    return None if params.seed is None else params.seed * 1_000_003 + start
