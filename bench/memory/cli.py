"""Learner memory benchmark: peak memory of one learner rank in one update of a training configuration.

    python -m bench.memory --config deploy/configs/codet5-large-ntp-py-apps.toml   # ~7 min on 2 CPUs
    python -m bench.memory --config deploy/configs/tiny.toml                       # seconds
    python -m bench.memory --config FILE --set learner.world_size=4 --json runs/bench/memory.json

The configuration (``--config``, then ``--set``, as ``coderl train`` reads it; default: the embedded
run) names the policy and the critic; hub names are built as random-weight presets of the same
shape (bench/memory/architectures.py: CodeT5-large as ``t5-large-random``, CodeT5-base as
``t5-base-random``), nothing is downloaded, and a hub name of unknown shape is refused. The
learner is built as the driver builds it (``learner.learner.Learner``: the critic with its head,
the optimizers, ``learner.precision``, ``micro_batch_tokens`` and ``activation_checkpointing``).

It then runs one whole update, ``Learner.train_on``, on a synthetic batch at the configuration's
longest shapes (bench/memory/workload.py): ``learner.batch_size`` sampled programs of
``sampler.sampling.max_new_tokens`` tokens after prompts of ``policy.max_prompt_tokens``, a greedy
decode per group when the baseline is greedy, and ``learner.ground_truth_batch_size`` ground-truth
rows of ``policy.max_program_tokens``: the actor's RL and CE passes, the critic's token values and,
with ``critic.mode = "online"``, the critic's own step. With ``learner.world_size`` ranks, one rank
is measured with its share, ceil(rows / world_size) of each. Every micro-batch runs; none is skipped.

The measurement runs in a fresh process. Its peak: on a GPU the CUDA allocator's
``max_memory_allocated`` over the update; on the host the process's peak resident set over the
update (the kernel's high-water mark, reset before it), under glibc's allocator as the learner runs
with it, whose heaps keep freed blocks resident for reuse. ``--unmap-freed`` has glibc give every
tensor of 64 KiB or more a mapping of its own, unmapped when freed, so that the resident set
follows the live tensors as ``max_memory_allocated`` does: a lower peak, but every new tensor's
pages are faulted in again (the APPS update ran 1.6x slower). The report breaks the peak down into
parameters, gradients and optimizer states (counted from the tensors) and the rest (activations,
workspace, allocator slack), shows it phase by phase (critic token values, actor passes and step,
critic step), gives the update's wall time, and ends with one line ``peak_bytes_per_rank=N``: the
larger of the update's peak and the peak while building, in bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import host_description, write_json
from coderl.cliconfig import add_config_options, load_command_config
from coderl.config import ConfigError
from driver.train_config import TrainConfig

from .architectures import UnknownArchitectureError, architecture_for

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    add_config_options(parser, TrainConfig, "TrainConfig", "learner.world_size=4")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--unmap-freed", action="store_true",
        help="host: unmap freed tensors (>= 64 KiB), so that the resident set follows the live "
        "tensors: a lower peak, a slower update",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        args.train_config = load_command_config(TrainConfig, args)
        check_models(args.train_config)
    except (ConfigError, UnknownArchitectureError) as exc:
        parser.error(str(exc))
    return args


def check_models(config: TrainConfig) -> None:
    """Raise UnknownArchitectureError unless every model of the run can be built at its shape."""
    architecture_for(config.policy.model)
    if config.critic.enabled:
        architecture_for(config.critic.model)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # torch loads after the arguments are valid; the measurement itself runs in a child process
    from .measure import MemoryRequest, run_in_child
    from .report import format_report

    config_name = str(args.config) if args.config else "the embedded run (deploy/configs/tiny.toml)"
    request = MemoryRequest(
        config=args.train_config, mmap_large_allocations=args.unmap_freed, threads=args.threads
    )
    print(f"host: {host_description()}; {time.strftime('%Y-%m-%d %H:%M')}")
    started = time.perf_counter()
    result = run_in_child(request)
    print(f"measured in a child process in {time.perf_counter() - started:.1f} s")
    if args.json:
        data = result.model_dump() | {"config": config_name, "overrides": args.overrides}
        write_json(args.json, data | {"peak_bytes_per_rank": result.peak_bytes_per_rank})
        print(f"wrote {args.json}")
    print(format_report(result, config_name + "".join(f" --set {o}" for o in args.overrides)))
    return 0
