"""The ``coderl`` command line: one subcommand per pipeline stage.

Each subcommand lives in its own module, which defines::

    HELP: str                                        # one line, shown by ``coderl --help``
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit code

and is registered by one line in ``COMMANDS``. Only the chosen subcommand's module is imported, so
``coderl execute`` never pays for torch or ray, and no ``--help`` imports torch, transformers or ray.
A module's ``--config``/``--set`` options come from ``coderl.cliconfig.add_config_options``, which
also lists every config key in its ``--help``. A subcommand reports a usage or input mistake by
raising ``CommandError`` (or ``ConfigError``): ``main`` prints it and returns its exit code.
``ALIASES`` keeps old command names working (hidden from ``--help``, with a warning).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from coderl import __version__
from coderl.cliconfig import CommandParser
from coderl.config import ConfigError
from coderl.logs import setup_logging

__all__ = ["ALIASES", "COMMANDS", "CommandError", "Subcommand", "build_parser", "main", "plural"]

log = logging.getLogger(__name__)

USAGE_ERROR = 2


@dataclass(frozen=True)
class Subcommand:
    module: str
    """module defining HELP, add_arguments(parser) and run(args) -> int"""
    help: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Subcommand] = {
    "execute": Subcommand("executor.cli", "run programs against problem tests in the sandbox and score them"),
    "worker": Subcommand(
        "executor.__main__", "serve execution requests from Redis streams (an executor service worker)"
    ),
    "sft": Subcommand(
        "learner.sft_cli", "warm-start a policy on ground-truth programs (writes a checkpoint)"
    ),
    "train": Subcommand(
        "driver.train_cli", "train a policy with CodeRL: sft -> critic -> RL (Ray, Redis, Docker)"
    ),
    "sample": Subcommand("actors.sample_cli", "sample programs for a problem set from a policy checkpoint"),
    "evaluate": Subcommand(
        "driver.evaluate_cli", "sample and judge programs for a problem set: pass@k, n@k, critical sampling"
    ),
    "suite": Subcommand("problems.suite.cli", "write the built-in generated problem suite (JSONL or APPS)"),
}
ALIASES: dict[str, str] = {"executor": "worker"}
"""deprecated name -> command: still accepted, hidden from --help, a warning when used"""


class CommandError(Exception):
    """A mistake the user can fix; ``main`` prints the message and returns ``exit_code``."""

    def __init__(self, message: str, exit_code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 problem"``, ``"2 problems"``, ``"0 problems"`` (``plural_form`` for irregular nouns)."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level for messages on stderr (default: INFO)",
    )
    group.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    return common


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` subcommand's module is imported to add its arguments."""
    parser = CommandParser(prog="coderl", description="Distributed CodeRL pipeline.")
    parser.add_argument("--version", action="version", version=f"coderl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()
    names = [(name, name) for name in COMMANDS] + list(ALIASES.items())
    for name, target in names:
        command = COMMANDS[target]
        shown = {"help": command.help} if name in COMMANDS else {}  # aliases stay out of the list
        sub = subparsers.add_parser(name, description=command.help, parents=[common], **shown)
        if name == selected:
            module = command.load()
            sub.description = getattr(module, "DESCRIPTION", command.help)
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def _selected(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS or arg in ALIASES), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``coderl ARGV``; returns the exit code (usage errors: 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    setup_logging(args.log_level, json=args.log_json)
    if args.command in ALIASES:
        log.warning(
            "coderl %s is deprecated and will be removed; use coderl %s", args.command, ALIASES[args.command]
        )
    try:
        return int(args.run(args))
    except (CommandError, ConfigError) as exc:
        code = exc.exit_code if isinstance(exc, CommandError) else USAGE_ERROR
        sys.stderr.write(f"coderl {args.command}: error: {exc}\n")
        return code
    except KeyboardInterrupt:
        sys.stderr.write(f"coderl {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":  # python -m coderl.cli: run the importable module, so that subcommands
    from coderl.cli import main as _main  # raise the same CommandError class that main catches

    sys.exit(_main())
