"""coderl suite: write the built-in generated problem suite (no download) for the other commands.

Each chosen split goes to OUT/SPLIT.jsonl (--format jsonl: native JSONL, one Problem per line) or
to OUT/SPLIT/ (--format apps: an APPS split folder, one folder per problem); --split all writes
train, sft, rl and held_out (train = sft + rl). Both load with load_problems, e.g.
``coderl sft --problems OUT/sft.jsonl``. OUT/suite_config.yaml records the resolved SuiteConfig
(problems/suite/build.py); further splits of the same suite may be added to OUT later, but an
existing split is never overwritten. A summary of counts per split, level, style and input kind
goes to stdout. --tests-only-primitives K writes the tests-only variant (problems/suite/variant.py):
K primitives occur in training only in RL problems without solutions, and each held-out problem
records its group (seen_with_solutions or tests_only) in its metadata.
Config precedence: --config FILE (SuiteConfig as TOML/YAML), then --set, then the flags.
Exit codes: 0 written, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from coderl.cli import CommandError
from coderl.cliconfig import add_config_options, load_command_config
from coderl.config import dump_config

from .build import SPLITS, Suite, SuiteConfig, build_suite, count_problems
from .export import export_apps, export_jsonl
from .variant import GROUPS

log = logging.getLogger(__name__)

HELP = "write the built-in generated problem suite (train/sft/rl/held-out) as JSONL or APPS folders"
DESCRIPTION = __doc__
ALL_SPLITS = ("train", "sft", "rl", "held_out")
CONFIG_FILE = "suite_config.yaml"
_COLUMNS = ("total", "easy", "medium", "hard", "stdio", "call", "int", "list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", required=True, type=Path, metavar="DIR", help="directory to write the splits into")
    add("--seed", type=int, metavar="S", help="suite seed (sets seed)")
    add("--split", choices=SPLITS, default="all", help="which split to write (default: all)")
    add("--format", choices=("jsonl", "apps"), default="jsonl", help="output format (default: jsonl)")
    add("--train-size", type=int, metavar="N", help="train problems (sets train_size)")
    add("--held-out-size", type=int, metavar="N", help="held-out problems (sets held_out_size)")
    add("--sft-fraction", type=float, metavar="F", help="share of train in the SFT split (sets sft_fraction)")
    add(
        "--tests-only-primitives", type=int, metavar="K",
        help="the tests-only variant: K primitives shown only through tests (sets tests_only_primitives)",
    )  # fmt: skip
    add_config_options(parser, SuiteConfig, "SuiteConfig", "list_fraction=0")


def _config(args: argparse.Namespace) -> SuiteConfig:
    flags = {
        "seed": args.seed,
        "train_size": args.train_size,
        "held_out_size": args.held_out_size,
        "sft_fraction": args.sft_fraction,
        "tests_only_primitives": args.tests_only_primitives,
    }
    return load_command_config(SuiteConfig, args, flags)


def _targets(out: Path, splits: tuple[str, ...], fmt: str) -> dict[str, Path]:
    """Where each split goes; CommandError when OUT is a file or a split is already there."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; give a directory")
    targets = {split: out / (f"{split}.jsonl" if fmt == "jsonl" else split) for split in splits}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise CommandError(f"already there: {', '.join(existing)}; remove it or choose another --out")
    return targets


def _record_config(out: Path, config: SuiteConfig) -> None:
    """Write OUT/suite_config.yaml, refusing to mix splits of different suites in one directory."""
    text = dump_config(config) + "\n"
    file = out / CONFIG_FILE
    if file.is_file() and file.read_text(encoding="utf-8") != text:
        raise CommandError(
            f"{file} records a different suite configuration; choose another --out to write this one"
        )
    out.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")


def format_summary(suite: Suite, targets: dict[str, Path], fmt: str) -> str:
    """The table printed at the end: counts per split, level, style and input kind."""
    header = f"{'split':<9}" + "".join(f"{column:>8}" for column in _COLUMNS)
    lines = [f"suite seed {suite.config.seed} ({fmt}):", header]
    for split, path in targets.items():
        counts = count_problems(suite.split(split))  # type: ignore[arg-type]
        lines.append(f"{split:<9}" + "".join(f"{counts[c]:>8}" for c in _COLUMNS) + f"  -> {path}")
    if suite.tests_only:
        groups = Counter(p.metadata["group"] for p in suite.held_out)
        lines.append(f"tests-only primitives: {', '.join(sorted(suite.tests_only))}")
        lines.append("held-out groups: " + ", ".join(f"{name} {groups[name]}" for name in GROUPS))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    log.debug("resolved suite configuration:\n%s", dump_config(config))
    splits = ALL_SPLITS if args.split == "all" else (args.split,)
    targets = _targets(args.out, splits, args.format)
    try:
        suite = build_suite(config)
    except ValueError as exc:  # SuiteCapacityError: the sizes ask for more than a level holds
        raise CommandError(str(exc)) from None
    _record_config(args.out, config)
    for split, path in targets.items():
        problems = suite.split(split)  # type: ignore[arg-type]
        if args.format == "jsonl":
            export_jsonl(problems, path)
        else:
            export_apps(problems, path)
    sys.stdout.write(format_summary(suite, targets, args.format) + "\n")
    return 0
